//! The canonical event: one audit event after normalization, whatever the
//! API sent. Every output record is built from it.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// Version of the canonical record layout (the `json` format and the
/// `schema_version` Kafka header). Bump on incompatible changes.
pub const SCHEMA_VERSION: &str = "1";

/// One audit event, normalized.
///
/// Strings are kept exactly as the API sent them (hostile content included);
/// each encoder escapes for its own format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// The configured source (tenant) name.
    pub source: String,
    /// The API's event id, the key for deduplication downstream.
    pub id: String,
    /// The action, e.g. `USER_LOGIN`; `UNKNOWN` when the API sent none.
    pub action: String,
    /// The kind of entity acted on, when known.
    pub entity_type: Option<String>,
    /// The entity acted on, when known.
    pub entity_id: Option<String>,
    /// The acting user's id, when known.
    pub user_id: Option<String>,
    /// The API's `details` object (any JSON value; `null` when absent).
    pub details: serde_json::Value,
    /// When the event happened, per the API, in UTC.
    #[serde(serialize_with = "rfc3339_millis")]
    pub created_at: DateTime<Utc>,
    /// When auditfwd fetched it.
    #[serde(serialize_with = "rfc3339_millis")]
    pub received_at: DateTime<Utc>,
    /// The API served this id before with other content: this is another
    /// version, delivered too (omitted when false).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub id_reused: bool,
    /// The acting user resolved through the users API, when enrichment is on
    /// and succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserInfo>,
    /// The event exactly as the API sent it (JSON text), for the `raw` format.
    #[serde(skip)]
    pub raw: Arc<str>,
}

/// The acting user, resolved by enrichment. Every field is optional because
/// every users API shape carries a different subset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct UserInfo {
    /// The user's id in the tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Login e-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Role or job title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Whether the account is enabled (not suspended or deactivated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A canonical field of [`Event`] that keys and routing can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `id`.
    Id,
    /// `source`.
    Source,
    /// `action`.
    Action,
    /// `entity_type`.
    EntityType,
    /// `entity_id`.
    EntityId,
    /// `user_id`.
    UserId,
    /// `created_at`, RFC 3339 with milliseconds.
    CreatedAt,
}

impl Field {
    /// Every field, in the order messages list them.
    pub const ALL: [Field; 7] = [
        Field::Id,
        Field::Source,
        Field::Action,
        Field::EntityType,
        Field::EntityId,
        Field::UserId,
        Field::CreatedAt,
    ];

    /// Its name in configs and in the `json` format.
    pub fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Source => "source",
            Field::Action => "action",
            Field::EntityType => "entity_type",
            Field::EntityId => "entity_id",
            Field::UserId => "user_id",
            Field::CreatedAt => "created_at",
        }
    }

    /// The field called `name`, if there is one.
    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The names, for messages: `id, source, …`.
    pub fn names() -> String {
        Field::ALL.map(Field::name).join(", ")
    }
}

impl Event {
    /// The value of a canonical field; `None` when the event has none.
    pub fn field(&self, field: Field) -> Option<Cow<'_, str>> {
        match field {
            Field::Id => Some(Cow::Borrowed(&self.id)),
            Field::Source => Some(Cow::Borrowed(&self.source)),
            Field::Action => Some(Cow::Borrowed(&self.action)),
            Field::EntityType => self.entity_type.as_deref().map(Cow::Borrowed),
            Field::EntityId => self.entity_id.as_deref().map(Cow::Borrowed),
            Field::UserId => self.user_id.as_deref().map(Cow::Borrowed),
            Field::CreatedAt => Some(Cow::Owned(format_millis(&self.created_at))),
        }
    }
}

/// RFC 3339 in UTC with milliseconds, the API's own timestamp shape
/// (`2026-03-01T10:35:39.817Z`).
pub fn format_millis(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn rfc3339_millis<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_millis(ts))
}
