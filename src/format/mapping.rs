//! The action mapping table: what each audit action means, for every format.
//!
//! One row per known action gives its OCSF class and activity, whether it
//! reports a failure, its severity, and its ECS categorization. Actions not
//! in the table are mapped by their suffix (`*_CREATED`, `*_DELETED`, …) to
//! an OCSF Web Resources Activity, and otherwise to an OCSF Base Event with
//! activity Other and the original action under `unmapped`. The README
//! documents this table; `tests` below keep the two in step.

use auditfwd_sink::Severity;

/// Vendor of the product the events come from (OCSF `metadata.product`,
/// CEF and LEEF headers).
pub const VENDOR: &str = "PeopleLens";
/// The product the events come from.
pub const PRODUCT: &str = "PeopleLens";
/// The API version the events come from.
pub const PRODUCT_VERSION: &str = "v1";

/// Writes the `Vendor|Product|Version|EventID` header fields that CEF and
/// LEEF share, each through the format's own `escape`.
pub fn device_header(out: &mut Vec<u8>, action: &str, escape: fn(&mut Vec<u8>, &str)) {
    for (i, field) in [VENDOR, PRODUCT, PRODUCT_VERSION, action]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b'|');
        }
        escape(out, field);
    }
}

/// An OCSF event class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OcsfClass {
    /// `class_uid`.
    pub uid: u32,
    /// `class_name`.
    pub name: &'static str,
    /// `category_uid`.
    pub category_uid: u32,
    /// `category_name`.
    pub category_name: &'static str,
}

/// Base Event (0): anything without a better class.
pub const BASE_EVENT: OcsfClass = OcsfClass {
    uid: 0,
    name: "Base Event",
    category_uid: 0,
    category_name: "Uncategorized",
};
/// Account Change (3001).
pub const ACCOUNT_CHANGE: OcsfClass = OcsfClass {
    uid: 3001,
    name: "Account Change",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
/// Authentication (3002).
pub const AUTHENTICATION: OcsfClass = OcsfClass {
    uid: 3002,
    name: "Authentication",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
/// Entity Management (3004).
pub const ENTITY_MANAGEMENT: OcsfClass = OcsfClass {
    uid: 3004,
    name: "Entity Management",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
/// User Access Management (3005).
pub const USER_ACCESS: OcsfClass = OcsfClass {
    uid: 3005,
    name: "User Access Management",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
/// Web Resources Activity (6001).
pub const WEB_RESOURCES: OcsfClass = OcsfClass {
    uid: 6001,
    name: "Web Resources Activity",
    category_uid: 6,
    category_name: "Application Activity",
};

/// Whether the action reports success or failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was attempted and refused.
    Failure,
    /// The action does not say.
    Unknown,
}

impl Outcome {
    /// OCSF `status_id`.
    pub fn ocsf_status_id(self) -> u8 {
        match self {
            Outcome::Success => 1,
            Outcome::Failure => 2,
            Outcome::Unknown => 0,
        }
    }

    /// OCSF `status`.
    pub fn ocsf_status(self) -> &'static str {
        match self {
            Outcome::Success => "Success",
            Outcome::Failure => "Failure",
            Outcome::Unknown => "Unknown",
        }
    }

    /// ECS `event.outcome` (also CEF `outcome`).
    pub fn ecs(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }
}

/// What an action means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// The action (for table rows; the fallbacks use `*`).
    pub action: &'static str,
    /// Human-readable name (CEF Name, OCSF message).
    pub name: &'static str,
    /// OCSF class.
    pub class: OcsfClass,
    /// OCSF `activity_id`.
    pub activity_id: u8,
    /// OCSF `activity_name`.
    pub activity_name: &'static str,
    /// Success or failure.
    pub outcome: Outcome,
    /// Severity (OCSF `severity_id`, syslog severity, CEF severity).
    pub severity: Severity,
    /// ECS `event.category`.
    pub ecs_category: &'static [&'static str],
    /// ECS `event.type`.
    pub ecs_type: &'static [&'static str],
    /// The entity the action is about is a user account (its id goes to
    /// OCSF `user` / ECS `user.target`).
    pub targets_user: bool,
}

// A positional constructor keeps the table one readable row per action.
#[allow(clippy::too_many_arguments)]
const fn row(
    action: &'static str,
    name: &'static str,
    class: OcsfClass,
    (activity_id, activity_name): (u8, &'static str),
    outcome: Outcome,
    severity: Severity,
    ecs_category: &'static [&'static str],
    ecs_type: &'static [&'static str],
    targets_user: bool,
) -> Mapping {
    Mapping {
        action,
        name,
        class,
        activity_id,
        activity_name,
        outcome,
        severity,
        ecs_category,
        ecs_type,
        targets_user,
    }
}

use Outcome::{Failure, Success};
use Severity::{High, Informational, Low, Medium};

/// The table. Keep it in step with the README.
#[rustfmt::skip]
pub const TABLE: &[Mapping] = &[
    row("USER_LOGIN", "User logged in", AUTHENTICATION, (1, "Logon"), Success, Informational, &["authentication"], &["start"], false),
    row("USER_LOGOUT", "User logged out", AUTHENTICATION, (2, "Logoff"), Success, Informational, &["authentication"], &["end"], false),
    row("USER_LOGIN_FAILED", "User login failed", AUTHENTICATION, (1, "Logon"), Failure, Medium, &["authentication"], &["start"], false),
    row("USER_CREATED", "User created", ACCOUNT_CHANGE, (1, "Create"), Success, Low, &["iam"], &["user", "creation"], true),
    row("USER_UPDATED", "User updated", ACCOUNT_CHANGE, (99, "Other"), Success, Low, &["iam"], &["user", "change"], true),
    row("USER_DELETED", "User deleted", ACCOUNT_CHANGE, (6, "Delete"), Success, Medium, &["iam"], &["user", "deletion"], true),
    row("USER_ENABLED", "User enabled", ACCOUNT_CHANGE, (2, "Enable"), Success, Low, &["iam"], &["user", "change"], true),
    row("USER_DISABLED", "User disabled", ACCOUNT_CHANGE, (5, "Disable"), Success, Medium, &["iam"], &["user", "change"], true),
    row("PASSWORD_CHANGED", "Password changed", ACCOUNT_CHANGE, (3, "Password Change"), Success, Low, &["iam"], &["user", "change"], true),
    row("PASSWORD_RESET", "Password reset", ACCOUNT_CHANGE, (4, "Password Reset"), Success, Medium, &["iam"], &["user", "change"], true),
    row("MFA_ENABLED", "MFA enabled", ACCOUNT_CHANGE, (10, "MFA Factor Enable"), Success, Low, &["iam"], &["user", "change"], true),
    row("MFA_DISABLED", "MFA disabled", ACCOUNT_CHANGE, (11, "MFA Factor Disable"), Success, High, &["iam"], &["user", "change"], true),
    row("ROLE_CHANGED", "User role changed", USER_ACCESS, (1, "Assign Privileges"), Success, High, &["iam"], &["user", "change"], true),
    row("API_KEY_CREATED", "API key created", ENTITY_MANAGEMENT, (1, "Create"), Success, High, &["iam"], &["admin", "creation"], false),
    row("API_KEY_REVOKED", "API key revoked", ENTITY_MANAGEMENT, (4, "Delete"), Success, Medium, &["iam"], &["admin", "deletion"], false),
    row("SETTINGS_CHANGED", "Tenant settings changed", ENTITY_MANAGEMENT, (3, "Update"), Success, Medium, &["configuration"], &["change"], false),
    row("CANDIDATE_CREATED", "Candidate created", WEB_RESOURCES, (1, "Create"), Success, Low, &["api"], &["creation"], false),
    row("CANDIDATE_UPDATED", "Candidate updated", WEB_RESOURCES, (3, "Update"), Success, Low, &["api"], &["change"], false),
    row("CANDIDATE_VIEWED", "Candidate viewed", WEB_RESOURCES, (2, "Read"), Success, Informational, &["api"], &["access"], false),
    row("CANDIDATE_DELETED", "Candidate deleted", WEB_RESOURCES, (4, "Delete"), Success, Medium, &["api"], &["deletion"], false),
    row("EXPORT_DOWNLOADED", "Export downloaded", WEB_RESOURCES, (7, "Export"), Success, Medium, &["api"], &["access"], false),
];

/// Fallbacks by suffix for actions not in the table, e.g. `JOB_CREATED`.
#[rustfmt::skip]
const SUFFIXES: &[(&str, Mapping)] = &[
    ("_CREATED", row("*_CREATED", "Resource created", WEB_RESOURCES, (1, "Create"), Success, Low, &["api"], &["creation"], false)),
    ("_UPDATED", row("*_UPDATED", "Resource updated", WEB_RESOURCES, (3, "Update"), Success, Low, &["api"], &["change"], false)),
    ("_VIEWED", row("*_VIEWED", "Resource viewed", WEB_RESOURCES, (2, "Read"), Success, Informational, &["api"], &["access"], false)),
    ("_DELETED", row("*_DELETED", "Resource deleted", WEB_RESOURCES, (4, "Delete"), Success, Medium, &["api"], &["deletion"], false)),
    ("_EXPORTED", row("*_EXPORTED", "Resource exported", WEB_RESOURCES, (7, "Export"), Success, Medium, &["api"], &["access"], false)),
    ("_DOWNLOADED", row("*_DOWNLOADED", "Resource exported", WEB_RESOURCES, (7, "Export"), Success, Medium, &["api"], &["access"], false)),
    ("_FAILED", row("*_FAILED", "Action failed", BASE_EVENT, (99, "Other"), Failure, Medium, &["api"], &["info"], false)),
];

/// Anything else.
pub const UNKNOWN: Mapping = row(
    "*",
    "Audit event",
    BASE_EVENT,
    (99, "Other"),
    Outcome::Unknown,
    Informational,
    &["api"],
    &["info"],
    false,
);

/// How many mappings there are: the table's rows, the suffix fallbacks and
/// [`UNKNOWN`].
pub const COUNT: usize = TABLE.len() + SUFFIXES.len() + 1;

/// Every mapping [`lookup`] can return, in that order; encoders keep what
/// they derive from a mapping at the same index.
pub static ALL: [Mapping; COUNT] = {
    let mut all = [UNKNOWN; COUNT];
    let mut i = 0;
    while i < TABLE.len() {
        all[i] = TABLE[i];
        i += 1;
    }
    let mut j = 0;
    while j < SUFFIXES.len() {
        all[i + j] = SUFFIXES[j].1;
        j += 1;
    }
    all
};

/// What `action` means.
pub fn lookup(action: &str) -> &'static Mapping {
    &ALL[index(action)]
}

/// The index in [`ALL`] of what `action` means.
pub fn index(action: &str) -> usize {
    if let Some(i) = TABLE.iter().position(|m| m.action == action) {
        return i;
    }
    SUFFIXES
        .iter()
        .position(|(suffix, _)| action.len() > suffix.len() && action.ends_with(suffix))
        .map_or(COUNT - 1, |j| TABLE.len() + j)
}

/// Whether `action` is in the table (not mapped by a fallback).
pub fn is_known(action: &str) -> bool {
    TABLE.iter().any(|m| m.action == action)
}

/// Actions that reach every mapping, for tests that encode each: every
/// action of the table, one per suffix fallback, and two unknown ones.
pub fn sample_actions() -> Vec<String> {
    const OUTSIDE_THE_TABLE: [&str; 9] = [
        "JOB_POSTING_CREATED",
        "NOTE_UPDATED",
        "REPORT_VIEWED",
        "OFFER_DELETED",
        "DATA_EXPORTED",
        "FILE_DOWNLOADED",
        "SSO_FAILED",
        "SOMETHING_NEW",
        "UNKNOWN",
    ];
    TABLE
        .iter()
        .map(|m| m.action)
        .chain(OUTSIDE_THE_TABLE)
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_suffix_and_unknown_actions() {
        assert_eq!(lookup("USER_LOGIN").class, AUTHENTICATION);
        assert_eq!(lookup("USER_LOGIN_FAILED").outcome, Outcome::Failure);
        assert_eq!(lookup("JOB_POSTING_DELETED").activity_id, 4);
        assert_eq!(lookup("_DELETED").class, BASE_EVENT);
        assert_eq!(lookup("line1\nline2"), &UNKNOWN);
        assert!(is_known("ROLE_CHANGED") && !is_known("JOB_CREATED"));
    }

    #[test]
    fn the_sample_actions_reach_every_mapping() {
        let mut reached: Vec<usize> = sample_actions().iter().map(|a| index(a)).collect();
        reached.sort();
        reached.dedup();
        assert_eq!(reached, (0..COUNT).collect::<Vec<_>>());
    }

    #[test]
    fn the_readme_documents_every_row() {
        let readme = include_str!("../../README.md");
        for m in TABLE.iter().chain(SUFFIXES.iter().map(|(_, m)| m)) {
            let class = format!("{} {}", m.class.uid, m.class.name);
            let line = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", m.action)))
                .unwrap_or_else(|| panic!("README mapping table lacks `{}`", m.action));
            assert!(
                line.contains(&class),
                "README row of {} lacks {class}: {line}",
                m.action
            );
            assert!(
                line.contains(&format!("{} {}", m.activity_id, m.activity_name)),
                "README row of {} lacks activity {} {}: {line}",
                m.action,
                m.activity_id,
                m.activity_name
            );
            assert!(
                line.contains(m.severity.name()),
                "README row of {} lacks severity: {line}",
                m.action
            );
        }
    }
}
