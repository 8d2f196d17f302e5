//! A minimal JSON writer for the structured formats (OCSF, ECS): objects
//! are written straight into the output buffer, keys are trusted literals
//! written as they are, and strings that need no escape (nearly all) are
//! copied whole. Escaping itself is serde_json's, with the line-safe
//! additions of [`super::json_text`] (DEL, C1, U+2028, U+2029), so the
//! document means exactly what `serde_json::to_vec` of it would.

use serde_json::Value;

/// Whether `s` surely needs no escape. Written as a fold over every byte,
/// not a short-circuiting search, so that it compiles to vector code.
fn is_clean(s: &str) -> bool {
    !s.bytes().fold(false, |dirty, b| {
        dirty | (b < 0x20) | (b == b'"') | (b == b'\\') | super::may_split_lines(b)
    })
}

/// Writes `s` as a JSON string.
pub fn string(out: &mut Vec<u8>, s: &str) {
    if is_clean(s) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        super::write_line_safe_json(out, s).expect("a string serializes into memory");
    }
}

/// Writes any JSON value, with the same fast path for its strings.
pub fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => serde_json::to_writer(out, n).expect("a number serializes"),
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
pub struct Obj<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
    close: &'static [u8],
}

impl Drop for Obj<'_> {
    fn drop(&mut self) {
        self.out.extend_from_slice(self.close);
    }
}

impl<'a> Obj<'a> {
    /// Opens an object.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj {
            out,
            empty: true,
            close: b"}",
        }
    }

    /// Writes `"key":`. Keys are literals of this crate: no escaping.
    fn key(&mut self, key: &'static str) {
        debug_assert!(is_clean(key));
        self.out.reserve(key.len() + 4);
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A string member.
    pub fn str(&mut self, key: &'static str, v: &str) -> &mut Self {
        self.key(key);
        string(self.out, v);
        self
    }

    /// A string member, when there is one.
    pub fn opt_str(&mut self, key: &'static str, v: Option<&str>) -> &mut Self {
        if let Some(v) = v {
            self.str(key, v);
        }
        self
    }

    /// An integer member.
    pub fn int(&mut self, key: &'static str, v: impl itoa::Integer) -> &mut Self {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self
    }

    /// A boolean member.
    pub fn bool(&mut self, key: &'static str, v: bool) -> &mut Self {
        self.key(key);
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        self
    }

    /// Any JSON value as a member.
    pub fn value(&mut self, key: &'static str, v: &Value) -> &mut Self {
        self.key(key);
        value(self.out, v);
        self
    }

    /// An array of strings as a member.
    pub fn strs(&mut self, key: &'static str, items: &[&str]) -> &mut Self {
        self.key(key);
        self.out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            string(self.out, item);
        }
        self.out.push(b']');
        self
    }

    /// A string member made of `parts` (no intermediate string).
    pub fn str_parts(&mut self, key: &'static str, parts: &[&str]) -> &mut Self {
        self.key(key);
        if parts.iter().all(|p| is_clean(p)) {
            self.out.push(b'"');
            for p in parts {
                self.out.extend_from_slice(p.as_bytes());
            }
            self.out.push(b'"');
        } else {
            string(self.out, &parts.concat());
        }
        self
    }

    /// Opens an object member.
    pub fn obj(&mut self, key: &'static str) -> Obj<'_> {
        self.key(key);
        Obj::new(self.out)
    }

    /// Opens an array member holding one object.
    pub fn obj_in_array(&mut self, key: &'static str) -> Obj<'_> {
        self.key(key);
        self.out.extend_from_slice(b"[{");
        Obj {
            out: self.out,
            empty: true,
            close: b"}]",
        }
    }

    /// Closes the object.
    pub fn end(self) {}
}
