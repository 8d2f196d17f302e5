//! A minimal JSON writer for the structured formats (json, OCSF, ECS):
//! objects are written straight into the output buffer, keys are trusted
//! literals written as they are, and strings that need no escape (nearly
//! all) are copied whole. Escaping itself is serde_json's, with the
//! line-safe additions of [`super::json_text`] (DEL, C1, U+2028, U+2029),
//! so the document means exactly what `serde_json::to_vec` of it would.
//!
//! The small functions here are inlined into the encoders on purpose: a key
//! is a literal, so its copy compiles to a few stores instead of a call.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::Value;

/// The bytes that may need an escape in a JSON string: what JSON escapes
/// (C0, `"`, `\\`) and what may start a character that line-safe output
/// escapes ([`super::may_split_lines`]).
static CARE: [bool; 256] = {
    let mut care = [false; 256];
    let mut b = 0;
    while b < 256 {
        care[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    care[0x7f] = true;
    care[0xc2] = true;
    care[0xe2] = true;
    care
};

/// Whether `s` surely needs no escape. Strings here are mostly short:
/// eight table lookups a step, one branch.
#[inline]
fn is_clean(s: &str) -> bool {
    let care = |b: &u8| CARE[usize::from(*b)];
    let mut chunks = s.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        if care(&c[0])
            | care(&c[1])
            | care(&c[2])
            | care(&c[3])
            | care(&c[4])
            | care(&c[5])
            | care(&c[6])
            | care(&c[7])
        {
            return false;
        }
    }
    !chunks.remainder().iter().any(care)
}

/// Appends a literal (JSON punctuation, keys, constant values).
#[inline(always)]
pub(crate) fn lit(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

/// Writes `s` as a JSON string.
#[inline]
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    if is_clean(s) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        escaped(out, s);
    }
}

/// Writes `s`, which needs escapes, as a JSON string.
#[cold]
#[inline(never)]
fn escaped(out: &mut Vec<u8>, s: &str) {
    super::write_line_safe_json(out, s).expect("a string serializes into memory");
}

/// Writes an integer.
#[inline]
pub(crate) fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Writes a boolean.
#[inline]
pub(crate) fn bool(out: &mut Vec<u8>, v: bool) {
    lit(out, if v { "true" } else { "false" });
}

/// Writes a timestamp as [`auditfwd_sink::format_millis`] does
/// (`2026-03-01T10:35:39.817Z`), without its allocation and formatting
/// machinery for the years 0 to 9999; other years and leap seconds take
/// that function itself.
pub(crate) fn millis(out: &mut Vec<u8>, ts: &DateTime<Utc>) {
    let t = ts.naive_utc();
    let year = t.year();
    let nano = t.nanosecond();
    if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
        lit(out, &auditfwd_sink::format_millis(ts));
        return;
    }
    let two = |n: u32| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    let year = year as u32;
    let (hi, lo, month, day) = (
        two(year / 100),
        two(year % 100),
        two(t.month()),
        two(t.day()),
    );
    let (hour, minute, second) = (two(t.hour()), two(t.minute()), two(t.second()));
    let ms = nano / 1_000_000;
    out.extend_from_slice(&[
        hi[0],
        hi[1],
        lo[0],
        lo[1],
        b'-',
        month[0],
        month[1],
        b'-',
        day[0],
        day[1],
        b'T',
        hour[0],
        hour[1],
        b':',
        minute[0],
        minute[1],
        b':',
        second[0],
        second[1],
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

/// Writes any JSON value, with the same fast path for its strings.
pub(crate) fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => lit(out, "null"),
        Value::Bool(b) => bool(out, *b),
        Value::Number(n) => {
            // serde_json writes integers with itoa too; floats with ryu.
            if let Some(u) = n.as_u64() {
                int(out, u);
            } else if let Some(i) = n.as_i64() {
                int(out, i);
            } else {
                serde_json::to_writer(out, n).expect("a number serializes");
            }
        }
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, k);
                out.push(b':');
                value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// An object being written; it is closed when dropped (or by
/// [`Obj::end`], which says so where it matters).
pub(crate) struct Obj<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
    close: &'static [u8],
}

impl Drop for Obj<'_> {
    #[inline]
    fn drop(&mut self) {
        self.out.extend_from_slice(self.close);
    }
}

impl<'a> Obj<'a> {
    /// Opens an object.
    #[inline]
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj {
            out,
            empty: true,
            close: b"}",
        }
    }

    /// Goes on with an object whose opening and first members are already
    /// in `out`.
    #[inline]
    pub(crate) fn resume(out: &'a mut Vec<u8>) -> Self {
        Obj {
            out,
            empty: false,
            close: b"}",
        }
    }

    /// Writes `"key":` (the value is the caller's to write). Keys are
    /// literals of this crate: no escaping.
    #[inline(always)]
    pub(crate) fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(is_clean(key));
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    /// A string member.
    #[inline(always)]
    pub(crate) fn str(&mut self, key: &'static str, v: &str) -> &mut Self {
        string(self.key(key), v);
        self
    }

    /// A member whose value is JSON text given as a literal.
    #[inline(always)]
    pub(crate) fn raw(&mut self, key: &'static str, json: &'static str) -> &mut Self {
        lit(self.key(key), json);
        self
    }

    /// A string member, when there is one.
    #[inline(always)]
    pub(crate) fn opt_str(&mut self, key: &'static str, v: Option<&str>) -> &mut Self {
        if let Some(v) = v {
            self.str(key, v);
        }
        self
    }

    /// An integer member.
    #[inline(always)]
    pub(crate) fn int(&mut self, key: &'static str, v: impl itoa::Integer) -> &mut Self {
        int(self.key(key), v);
        self
    }

    /// A boolean member.
    #[inline(always)]
    pub(crate) fn bool(&mut self, key: &'static str, v: bool) -> &mut Self {
        bool(self.key(key), v);
        self
    }

    /// Any JSON value as a member.
    #[inline(always)]
    pub(crate) fn value(&mut self, key: &'static str, v: &Value) -> &mut Self {
        value(self.key(key), v);
        self
    }

    /// A timestamp member (see [`millis`]).
    #[inline(always)]
    pub(crate) fn millis(&mut self, key: &'static str, ts: &DateTime<Utc>) -> &mut Self {
        let out = self.key(key);
        out.push(b'"');
        millis(out, ts);
        out.push(b'"');
        self
    }

    /// An array of strings as a member.
    #[inline]
    pub(crate) fn strs(&mut self, key: &'static str, items: &[&str]) -> &mut Self {
        let out = self.key(key);
        out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, item);
        }
        out.push(b']');
        self
    }

    /// A string member made of `parts` (no intermediate string).
    pub(crate) fn str_parts(&mut self, key: &'static str, parts: &[&str]) -> &mut Self {
        let out = self.key(key);
        if parts.iter().all(|p| is_clean(p)) {
            out.push(b'"');
            for p in parts {
                out.extend_from_slice(p.as_bytes());
            }
            out.push(b'"');
        } else {
            string(out, &parts.concat());
        }
        self
    }

    /// Opens an object member.
    #[inline(always)]
    pub(crate) fn obj(&mut self, key: &'static str) -> Obj<'_> {
        Obj::new(self.key(key))
    }

    /// Opens an array member holding one object.
    #[inline]
    pub(crate) fn obj_in_array(&mut self, key: &'static str) -> Obj<'_> {
        let out = self.key(key);
        out.extend_from_slice(b"[{");
        Obj {
            out,
            empty: true,
            close: b"}]",
        }
    }

    /// Leaves the object open: what follows in the buffer goes on with it
    /// (for fragments written once and copied into many documents).
    pub(crate) fn leave_open(mut self) {
        self.close = b"";
    }

    /// Closes the object.
    #[inline]
    pub(crate) fn end(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};
    use serde_json::json;

    #[test]
    fn writes_what_serde_json_means() {
        let doc = json!({
            "plain": "text",
            "escaped": "quote\" back\\slash\nnul\0 del\u{7f} c1\u{85} ünï",
            "n": [0, -1, 1.5, -0.0, 1e300, u64::MAX, i64::MIN, null, true, false],
            "nested": { "k\"ey": { "": [] }, "e": {} },
        });
        let mut out = Vec::new();
        value(&mut out, &doc);
        assert_eq!(out, super::super::json_text(&doc).as_bytes());
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), doc);
    }

    #[test]
    fn objects_and_members() {
        let mut out = Vec::new();
        let mut o = Obj::new(&mut out);
        o.str("a", "x\"y").int("b", -3i64).bool("c", true);
        o.opt_str("none", None).strs("d", &["p", "q"]);
        o.obj("e").str("f", "g");
        o.obj_in_array("h").int("i", 1u8);
        o.obj("l").obj("m").str_parts("n", &["a", ": ", "b\"c"]);
        o.value("j", &json!({"k": null}));
        o.end();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"a": "x\"y", "b": -3, "c": true, "d": ["p", "q"],
                   "e": {"f": "g"}, "h": [{"i": 1}], "j": {"k": null},
                   "l": {"m": {"n": "a: b\"c"}}})
        );
    }

    #[test]
    fn fragments_left_open_and_resumed() {
        let mut out = Vec::new();
        let mut o = Obj::new(&mut out);
        o.int("a", 1u8).key("b");
        o.leave_open();
        out.extend_from_slice(b"2");
        Obj::resume(&mut out).str("c", "d");
        assert_eq!(out, br#"{"a":1,"b":2,"c":"d"}"#);
    }

    #[test]
    fn timestamps_as_format_millis_writes_them() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_milli_opt(23, 59, 59, 1_250)
            .unwrap()
            .and_utc();
        let mut times = vec![leap];
        for ms in [
            0,
            -1,
            1_772_361_339_817,
            951_782_400_000,
            -62_167_219_200_000,
            -62_167_219_200_001,
            253_402_300_799_999,
            253_402_300_800_000,
            DateTime::<Utc>::MIN_UTC.timestamp_millis(),
            DateTime::<Utc>::MAX_UTC.timestamp_millis(),
        ] {
            times.push(Utc.timestamp_millis_opt(ms).unwrap());
        }
        times.push(Utc.timestamp_nanos(1_772_361_339_817_999_999));
        for t in times {
            let mut out = Vec::new();
            millis(&mut out, &t);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                auditfwd_sink::format_millis(&t)
            );
        }
    }
}
