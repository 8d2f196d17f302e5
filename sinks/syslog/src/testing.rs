//! What tests of the syslog sink compare with, here and in auditfwd's
//! end-to-end tests. Enabled by the `testing` feature.

/// How a receiver reads back a value the sink wrote into structured data
/// ([`crate::encode::sd_value`]): control characters as visible escapes
/// (`\n`, `\r`, `\t`, `\0`, `\xHH`), everything else as it was. Written
/// out by hand, not derived from `sd_value`, so that it can judge it.
pub fn visible(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
