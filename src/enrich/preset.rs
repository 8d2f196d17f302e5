//! Users-API shapes: a URL template and where each field sits in the
//! response (JSON pointers). The built-in presets cover the shapes of
//! seeds 000-004; a custom shape is the same thing written in the config.

use auditfwd_sink::UserInfo;
use serde::Deserialize;
use serde_json::Value;

/// Where a field is, and how to read it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum FieldSpec {
    /// One JSON pointer, e.g. `"/email"`.
    Pointer(String),
    /// Several pointers whose string values are joined with a space
    /// (first and last name); missing ones are skipped.
    Join(Vec<String>),
    /// A pointer read as a boolean: `true`/`false`, or a string compared to
    /// `equals`; `negate` flips it (`suspended` → enabled).
    Flag {
        /// The pointer.
        pointer: String,
        /// The string that means true (`"active"`).
        #[serde(default)]
        equals: Option<String>,
        /// Invert the result.
        #[serde(default)]
        negate: bool,
    },
}

/// Where the user fields are in a response.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// The user's id.
    #[serde(default)]
    pub id: Option<FieldSpec>,
    /// E-mail.
    #[serde(default)]
    pub email: Option<FieldSpec>,
    /// Display name.
    #[serde(default)]
    pub name: Option<FieldSpec>,
    /// Role or job title.
    #[serde(default)]
    pub role: Option<FieldSpec>,
    /// Whether the account is enabled.
    #[serde(default)]
    pub enabled: Option<FieldSpec>,
}

/// A users-API shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// Path template relative to the users API base URL, with `{id}` and
    /// optionally `{customer_id}`.
    pub url: String,
    /// Field locations.
    pub fields: Fields,
}

fn p(s: &str) -> Option<FieldSpec> {
    Some(FieldSpec::Pointer(s.into()))
}

fn join(a: &str, b: &str) -> Option<FieldSpec> {
    Some(FieldSpec::Join(vec![a.into(), b.into()]))
}

fn flag(pointer: &str, equals: Option<&str>, negate: bool) -> Option<FieldSpec> {
    Some(FieldSpec::Flag {
        pointer: pointer.into(),
        equals: equals.map(Into::into),
        negate,
    })
}

/// Names of the built-in presets.
pub const PRESETS: &[&str] = &[
    "peoplelens-v1",
    "peoplelens-legacy",
    "demo-docs",
    "customer-scoped",
    "jsonapi",
];

/// A built-in preset by name.
pub fn builtin(name: &str) -> Option<Preset> {
    let (url, fields) = match name {
        // seed 001: GET /api/v1/users/{id} -> {id,email,first_name,last_name,role}
        "peoplelens-v1" => (
            "/api/v1/users/{id}",
            Fields {
                id: p("/id"),
                email: p("/email"),
                name: join("/first_name", "/last_name"),
                role: p("/role"),
                enabled: None,
            },
        ),
        // seed 000: GET /api/users/{id} -> {"user":{..., company_role, is_enabled, user_preferences:[{role}]}}
        "peoplelens-legacy" => (
            "/api/users/{id}",
            Fields {
                id: p("/user/id"),
                email: p("/user/email"),
                name: join("/user/first_name", "/user/last_name"),
                role: p("/user/user_preferences/0/role"),
                enabled: flag("/user/is_enabled", None, false),
            },
        ),
        // seed 002: GET /api/v1/users/{id} -> {id,email,name,role,status,last_login}
        "demo-docs" => (
            "/api/v1/users/{id}",
            Fields {
                id: p("/id"),
                email: p("/email"),
                name: p("/name"),
                role: p("/role"),
                enabled: flag("/status", Some("active"), false),
            },
        ),
        // seed 003: GET /api/v1/customers/{customerId}/users/{userId} -> {_id,email,firstName,lastName,jobTitle,status,...}
        "customer-scoped" => (
            "/api/v1/customers/{customer_id}/users/{id}",
            Fields {
                id: p("/_id"),
                email: p("/email"),
                name: join("/firstName", "/lastName"),
                role: p("/jobTitle"),
                enabled: flag("/status", Some("active"), false),
            },
        ),
        // seed 004: GET /users/{id} -> {"data":{"id","type","attributes":{firstName,lastName,email,suspended,...}}}
        "jsonapi" => (
            "/users/{id}",
            Fields {
                id: p("/data/id"),
                email: p("/data/attributes/email"),
                name: join("/data/attributes/firstName", "/data/attributes/lastName"),
                role: None,
                enabled: flag("/data/attributes/suspended", None, true),
            },
        ),
        _ => return None,
    };
    Some(Preset {
        url: url.into(),
        fields,
    })
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl FieldSpec {
    /// Every pointer in the spec.
    pub fn pointers(&self) -> Vec<&str> {
        match self {
            FieldSpec::Pointer(p) | FieldSpec::Flag { pointer: p, .. } => vec![p],
            FieldSpec::Join(ps) => ps.iter().map(String::as_str).collect(),
        }
    }

    fn text(&self, doc: &Value) -> Option<String> {
        match self {
            FieldSpec::Pointer(p) => doc.pointer(p).and_then(as_text),
            FieldSpec::Join(ps) => {
                let parts: Vec<String> = ps
                    .iter()
                    .filter_map(|p| doc.pointer(p).and_then(as_text))
                    .collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            }
            FieldSpec::Flag { .. } => self.flag(doc).map(|b| b.to_string()),
        }
    }

    fn flag(&self, doc: &Value) -> Option<bool> {
        let (pointer, equals, negate) = match self {
            FieldSpec::Flag {
                pointer,
                equals,
                negate,
            } => (pointer.as_str(), equals.as_deref(), *negate),
            FieldSpec::Pointer(p) => (p.as_str(), None, false),
            FieldSpec::Join(_) => return None,
        };
        let value = match (doc.pointer(pointer)?, equals) {
            (Value::Bool(b), None) => *b,
            (Value::String(s), Some(want)) => s.eq_ignore_ascii_case(want),
            (Value::String(s), None) => match s.as_str() {
                "true" => true,
                "false" => false,
                _ => return None,
            },
            _ => return None,
        };
        Some(value != negate)
    }
}

impl Fields {
    /// Reads a user from a response body; `None` if nothing was found.
    pub fn extract(&self, doc: &Value) -> Option<UserInfo> {
        let text = |f: &Option<FieldSpec>| f.as_ref().and_then(|f| f.text(doc));
        let info = UserInfo {
            id: text(&self.id),
            email: text(&self.email),
            name: text(&self.name),
            role: text(&self.role),
            enabled: self.enabled.as_ref().and_then(|f| f.flag(doc)),
        };
        (info != UserInfo::default()).then_some(info)
    }

    /// Every configured spec with its field name.
    pub fn specs(&self) -> Vec<(&'static str, &FieldSpec)> {
        [
            ("id", &self.id),
            ("email", &self.email),
            ("name", &self.name),
            ("role", &self.role),
            ("enabled", &self.enabled),
        ]
        .into_iter()
        .filter_map(|(n, f)| f.as_ref().map(|f| (n, f)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_seed_shape_is_read() {
        let cases = [
            (
                "peoplelens-v1",
                json!({"id":"u1","email":"a@x.io","first_name":"Ada","last_name":"Lovelace","role":"Recruiter"}),
                (
                    Some("a@x.io"),
                    Some("Ada Lovelace"),
                    Some("Recruiter"),
                    None,
                ),
            ),
            (
                "peoplelens-legacy",
                json!({"user":{"id":"usr-1","first_name":"John","last_name":"Doe","email":"j@x.io","company_role":"Engineer","is_enabled":false,"user_preferences":[{"role":"User"}]}}),
                (Some("j@x.io"), Some("John Doe"), Some("User"), Some(false)),
            ),
            (
                "demo-docs",
                json!({"id":"usr_1","email":"j@x.io","name":"John Doe","role":"admin","status":"active","last_login":"2024-01-20T09:15:00Z"}),
                (Some("j@x.io"), Some("John Doe"), Some("admin"), Some(true)),
            ),
            (
                "customer-scoped",
                json!({"_id":"64f","email":"k@x.io","firstName":"Kim","lastName":"Lee","jobTitle":"CTO","status":"inactive"}),
                (Some("k@x.io"), Some("Kim Lee"), Some("CTO"), Some(false)),
            ),
            (
                "jsonapi",
                json!({"data":{"id":"d1","type":"users","attributes":{"firstName":"Bob","lastName":"User","email":"b@x.io","suspended":false,"tenantAdmin":false}}}),
                (Some("b@x.io"), Some("Bob User"), None, Some(true)),
            ),
        ];
        for (name, doc, (email, full, role, enabled)) in cases {
            let u = builtin(name).unwrap().fields.extract(&doc).unwrap();
            assert_eq!(
                (
                    u.email.as_deref(),
                    u.name.as_deref(),
                    u.role.as_deref(),
                    u.enabled
                ),
                (email, full, role, enabled),
                "{name}"
            );
        }
        assert_eq!(
            builtin("peoplelens-v1")
                .unwrap()
                .fields
                .extract(&json!({"error":"x"})),
            None
        );
        assert!(builtin("nope").is_none());
    }
}
