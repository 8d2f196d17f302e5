//! Hostile values: what a compromised, buggy or creative tenant can put in
//! any field. Every encoder and sink is tested against these.

use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

/// Strings that break naive encoders: line breaks, a forged syslog header,
/// CEF/LEEF delimiters, structured-data closers, control characters,
/// non-ASCII, and a very long value.
pub const NASTY: &[&str] = &[
    "line1\nline2",
    "cr\r\n<13>1 2026-01-01T00:00:00.000Z forged-host auditfwd - USER_LOGIN [auditfwd@32473 id=\"forged\"] injected",
    "pipe|in|value",
    "key=value other=thing",
    "close]bracket\"quote\\backslash",
    "nul\u{0}bell\u{7}esc\u{1b}[31mdel\u{7f}",
    "ünïcödé ✓ 日本語 🚀",
    "line\u{2028}separator\u{2029}para",
    "CEF:0|forged|vendor|1|100|name|10|act=x",
    "LEEF:2.0|forged|p|1|e|^|a=b",
    "^caret^delim^",
    "tab\there",
    "' OR 1=1 -- <script>alert(1)</script>",
    "%s%n%x",
    "",
    " ",
];

/// A random hostile string, sometimes very long.
pub fn string(rng: &mut impl Rng) -> String {
    if rng.random_bool(0.05) {
        return "A\n]|=^\"".repeat(1500); // ~10 KB
    }
    NASTY.choose(rng).expect("non-empty").to_string()
}

/// A value of the wrong type or shape for a string field.
pub fn odd_value(rng: &mut impl Rng) -> Value {
    match rng.random_range(0..7) {
        0 => Value::Null,
        1 => json!(rng.random_range(-5i64..100_000)),
        2 => json!(rng.random_bool(0.5)),
        3 => json!({ "nested": string(rng) }),
        4 => json!([string(rng), 1, null]),
        5 => json!(1.5e300),
        _ => Value::String(string(rng)),
    }
}

/// A hostile `details` value.
pub fn details(rng: &mut impl Rng) -> Value {
    match rng.random_range(0..6) {
        0 => Value::Null,
        1 => Value::String(string(rng)),
        2 => json!([1, "two", { "three": string(rng) }]),
        3 => {
            let mut deep = json!(string(rng));
            for _ in 0..40 {
                deep = json!({ "k": deep });
            }
            deep
        }
        4 => json!({ string(rng): string(rng), "ip": "203.0.113.9", "n": -0.0 }),
        _ => json!({ "ip": "198.51.100.7", "note": string(rng), "user_agent": string(rng) }),
    }
}
