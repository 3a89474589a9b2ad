//! JSON objects written member by member straight into a `String`, for the documents core
//! writes on every request: the request's log line and an answer's headers as the record the
//! Workers adapter hands to JS. `serde_json`'s serializer escapes each key and value a byte at a
//! time and writes through several layers per member; on an authenticated request that was a
//! fifth of core's instructions. Strings are escaped exactly as `serde_json` escapes them, so
//! the text is the same.

/// A member's name known when core is compiled, written ahead with its quotes, its colon and
/// the comma before it (`,"name":`), so that writing it is one append ([`crate::json_key!`]).
/// At the Worker's `opt-level = "z"` every append is a call and a copy, and the documents core
/// writes on every request have about fifty members (BENCHMARKS.md, change 58).
#[derive(Debug, Clone, Copy)]
pub struct Key(&'static str);

impl Key {
    /// `,"name":`, checked where the constant is built (a compile error, not a request's
    /// panic): a name holds no `"`, `\` or control character.
    pub const fn quoted(text: &'static str) -> Self {
        let b = text.as_bytes();
        assert!(b.len() >= 4 && b[0] == b',' && b[1] == b'"');
        assert!(b[b.len() - 2] == b'"' && b[b.len() - 1] == b':');
        let mut i = 2;
        while i < b.len() - 2 {
            assert!(b[i] >= 0x20 && b[i] != b'"' && b[i] != b'\\');
            i += 1;
        }
        Self(text)
    }
}

/// A member's name: a [`Key`], or any `&str` the caller knows needs no escaping (header
/// names, the caller's identifiers).
pub trait Name {
    fn write_to(self, o: &mut JsonObject);
}

impl Name for Key {
    fn write_to(self, o: &mut JsonObject) {
        let text = if std::mem::replace(&mut o.empty, false) {
            self.0.get(1..).unwrap_or_default()
        } else {
            self.0
        };
        o.out.extend_from_slice(text.as_bytes());
    }
}

impl Name for &str {
    fn write_to(self, o: &mut JsonObject) {
        o.key(self);
    }
}

/// A [`Key`] for a member name given as a literal, built at compile time:
/// `o.str(json_key!("email"), …)`.
#[macro_export]
macro_rules! json_key {
    ($name:literal) => {
        const { $crate::json_writer::Key::quoted(concat!(",\"", $name, "\":")) }
    };
}

/// An object being written. Members go in the order they are written. Keys are written as
/// they are: they are the caller's identifiers or header names (tokens, which hold no `"`,
/// `\` or control character).
pub struct JsonObject {
    /// UTF-8 throughout: only `str`s and ASCII punctuation go in.
    out: Vec<u8>,
    /// The innermost object open has no member yet.
    empty: bool,
}

impl JsonObject {
    /// `{`, with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        Self { out, empty: true }
    }

    /// `"key":`, after a comma unless it is the object's first member.
    pub fn key(&mut self, key: &str) {
        let open: &[u8] = if std::mem::replace(&mut self.empty, false) {
            b"\""
        } else {
            b",\""
        };
        self.out.extend_from_slice(open);
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// Opens an object as the value of `key`; [`Self::close`] ends it.
    pub fn open(&mut self, key: impl Name) {
        key.write_to(self);
        self.begin();
    }

    /// Opens an array as the value of `key`; [`Self::end_array`] ends it.
    pub fn open_array(&mut self, key: impl Name) {
        key.write_to(self);
        self.out.push(b'[');
        self.empty = true;
    }

    /// Opens an object as the next element of an open array.
    pub fn element(&mut self) {
        if !std::mem::replace(&mut self.empty, false) {
            self.out.push(b',');
        }
        self.begin();
    }

    fn begin(&mut self) {
        self.out.push(b'{');
        self.empty = true;
    }

    pub fn close(&mut self) {
        self.out.push(b'}');
        self.empty = false;
    }

    pub fn end_array(&mut self) {
        self.out.push(b']');
        self.empty = false;
    }

    pub fn str(&mut self, key: impl Name, value: &str) {
        key.write_to(self);
        push_string(&mut self.out, value);
    }

    /// A string value, or `null`.
    pub fn opt_str(&mut self, key: impl Name, value: Option<&str>) {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    pub fn num(&mut self, key: impl Name, value: u64) {
        key.write_to(self);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// A number, or `null`.
    pub fn opt_num(&mut self, key: impl Name, value: Option<u64>) {
        match value {
            Some(v) => self.num(key, v),
            None => self.null(key),
        }
    }

    pub fn bool(&mut self, key: impl Name, value: bool) {
        key.write_to(self);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// An array of strings.
    pub fn strs<'a>(&mut self, key: impl Name, values: impl IntoIterator<Item = &'a str>) {
        key.write_to(self);
        self.out.push(b'[');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            push_string(&mut self.out, v);
        }
        self.out.push(b']');
    }

    pub fn null(&mut self, key: impl Name) {
        key.write_to(self);
        self.out.extend_from_slice(b"null");
    }

    /// A boolean, or `null`.
    pub fn opt_bool(&mut self, key: impl Name, value: Option<bool>) {
        match value {
            Some(v) => self.bool(key, v),
            None => self.null(key),
        }
    }

    /// The text, with the outermost object closed.
    pub fn finish(self) -> String {
        // Only `str`s and ASCII went in: this never comes back empty.
        String::from_utf8(self.finish_bytes()).unwrap_or_default()
    }

    /// The same text as [`Self::finish`], as bytes: UTF-8 by construction (only `str`s and
    /// ASCII went in), so a body need not be checked again, a byte at a time.
    pub fn finish_bytes(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

/// `value` as a JSON string, quoted and escaped as `serde_json` escapes it: `"` and `\`, the
/// short forms `\b \f \n \r \t`, other control characters as `\u00XX`; nothing else.
pub fn push_string(out: &mut Vec<u8>, value: &str) {
    out.reserve(value.len() + 2);
    out.push(b'"');
    let bytes = value.as_bytes();
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut plain = 0;
    let mut code = *b"\\u00XX";
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => {
                let [_, _, _, _, hi, lo] = &mut code;
                let digit = |n: u8| HEX.get(usize::from(n)).copied().unwrap_or(b'0');
                (*hi, *lo) = (digit(b >> 4), digit(b & 15));
                &code
            }
            _ => continue,
        };
        out.extend_from_slice(bytes.get(plain..i).unwrap_or_default());
        out.extend_from_slice(escaped);
        plain = i + 1;
    }
    out.extend_from_slice(bytes.get(plain..).unwrap_or_default());
    out.push(b'"');
}

const HEX: [u8; 16] = *b"0123456789abcdef";

/// Whether any byte of `bytes` is `"`, `\` or a control character, checked eight bytes at a
/// time.
fn needs_escape(bytes: &[u8]) -> bool {
    use crate::words::{any, below, equal};
    any(
        bytes,
        |v| below(v, 0x20) | equal(v, b'"') | equal(v, b'\\'),
        |b| b < 0x20 || b == b'"' || b == b'\\',
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn static_and_written_keys_make_the_same_document() {
        let mut a = JsonObject::with_capacity(8);
        let mut b = JsonObject::with_capacity(8);
        a.str(crate::json_key!("first"), "x");
        b.str("first", "x");
        a.open(crate::json_key!("inner"));
        b.open("inner");
        a.num(crate::json_key!("n"), 1);
        b.num("n", 1);
        a.bool(crate::json_key!("on"), true);
        b.bool("on", true);
        a.close();
        b.close();
        a.strs(crate::json_key!("list"), ["a", "b"]);
        b.strs("list", ["a", "b"]);
        a.null(crate::json_key!("none"));
        b.null("none");
        let (a, b) = (a.finish(), b.finish());
        assert_eq!(a, b);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&a).unwrap(),
            json!({"first": "x", "inner": {"n": 1, "on": true}, "list": ["a", "b"], "none": null})
        );
    }

    #[test]
    fn every_ascii_character_is_escaped_as_serde_json_escapes_it_wherever_it_stands() {
        for b in 0u8..0x80 {
            let c = char::from(b);
            for s in [
                format!("{c}"),
                format!("abcdefg{c}"),
                format!("abcdefgh{c}ijklmnop"),
                format!("0123456789abcdef01234567{c}"),
                format!("\u{e9}{c}\u{e9}{c}"),
            ] {
                let mut out = Vec::new();
                push_string(&mut out, &s);
                assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{b:#x} in {s:?}");
            }
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in [
            "",
            "plain",
            "quote \" and backslash \\",
            "\u{0}\u{1f}\t\n\r",
            "caf\u{e9} \u{2028} \u{7f}",
        ] {
            let mut out = Vec::new();
            push_string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap());
        }
    }

    #[test]
    fn objects_nest_and_separate_their_members() {
        let mut o = JsonObject::with_capacity(0);
        o.str("a", "x");
        o.open("b");
        o.num("c", 1);
        o.opt_num("d", None);
        o.close();
        o.open_array("e");
        for n in [2, 3] {
            o.element();
            o.num("f", n);
            o.close();
        }
        o.end_array();
        o.open_array("g");
        o.end_array();
        o.opt_str("h", Some("\"q\""));
        o.open("i");
        o.close();
        let text = o.finish();
        let expected = json!({
            "a": "x", "b": { "c": 1, "d": null }, "e": [{ "f": 2 }, { "f": 3 }], "g": [],
            "h": "\"q\"", "i": {},
        });
        assert_eq!(text, expected.to_string());
    }
}
