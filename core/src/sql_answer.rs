//! Reads the SQL proxy's answer (Neon's result JSON) without building its rows: each value is
//! found where it stands, as a byte range of the answer, and read later by the type that wants
//! it. So a `json` document is parsed once, and nothing is copied or allocated per value.
//!
//! What it reads: a batch's `{"results": [result, …]}` or a single result; of a result, each
//! field's `dataTypeID` and the `rows` (arrays of values). Every other member, in any order, is
//! skipped. Skipping checks the structure (brackets, strings and their escapes, literals, and
//! that a number is made of a number's characters, a digit among them) but not what a skipped
//! string or number holds; a value that is read is checked in full by `serde_json` then.

use std::ops::Range;

use crate::words;

/// One statement's result: its columns' types and, for each row, each value's place in the
/// answer (`None` for `null`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawResult {
    pub types: Vec<u32>,
    pub rows: Vec<Vec<Option<Range<usize>>>>,
}

/// Why an answer could not be read: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerError {
    pub at: usize,
    pub expected: &'static str,
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expected {} at byte {}", self.expected, self.at)
    }
}

type Read<T> = Result<T, AnswerError>;

/// A batch's results, in order.
pub fn batch(answer: &[u8]) -> Read<Vec<RawResult>> {
    let mut r = Reader { b: answer, pos: 0 };
    let mut results = None;
    r.object(|r, key| {
        if key == b"results" {
            let mut list = Vec::new();
            r.array(|r| {
                list.push(r.result()?);
                Ok(())
            })?;
            results = Some(list);
            Ok(())
        } else {
            r.skip()
        }
    })?;
    r.end()?;
    results.ok_or(AnswerError {
        at: 0,
        expected: "a `results` member",
    })
}

/// A single statement's result.
pub fn single(answer: &[u8]) -> Read<RawResult> {
    let mut r = Reader { b: answer, pos: 0 };
    let result = r.result()?;
    r.end()?;
    Ok(result)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn error<T>(&self, expected: &'static str) -> Read<T> {
        Err(AnswerError {
            at: self.pos,
            expected,
        })
    }

    fn space(&mut self) {
        while matches!(self.b.get(self.pos), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    /// The next byte after any space, not taken.
    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.b.get(self.pos).copied()
    }

    fn take(&mut self, byte: u8, expected: &'static str) -> Read<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.error(expected)
        }
    }

    fn end(&mut self) -> Read<()> {
        if self.peek().is_none() {
            Ok(())
        } else {
            self.error("the end of the answer")
        }
    }

    /// `{…}`: `member` is called with each key (as written, escapes and all) and must read or
    /// skip its value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Read<()>) -> Read<()> {
        self.take(b'{', "`{`")?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return self.error("a member name");
            }
            let key = self.string()?;
            let key = self.b.get(key.start + 1..key.end - 1).unwrap_or_default();
            self.take(b':', "`:`")?;
            member(self, key)?;
            if !self.more(b'}', "`,` or `}`")? {
                return Ok(());
            }
        }
    }

    /// `[…]`: `element` is called at each element and must read or skip it.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Read<()>) -> Read<()> {
        self.take(b'[', "`[`")?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            element(self)?;
            if !self.more(b']', "`,` or `]`")? {
                return Ok(());
            }
        }
    }

    /// After a member or an element: past a `,` (true: another follows) or past `close`
    /// (false: the object or array ends here).
    fn more(&mut self, close: u8, expected: &'static str) -> Read<bool> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => self.error(expected),
        }
    }

    /// A string at the opening quote; its range, quotes included.
    fn string(&mut self) -> Read<Range<usize>> {
        let start = self.pos;
        self.pos += 1;
        loop {
            let Some(i) = words::first(
                self.b.get(self.pos..).unwrap_or_default(),
                |v| words::equal(v, b'"') | words::equal(v, b'\\'),
                |b| b == b'"' || b == b'\\',
            ) else {
                self.pos = self.b.len();
                return self.error("the end of a string");
            };
            self.pos += i;
            if self.b.get(self.pos) == Some(&b'"') {
                self.pos += 1;
                return Ok(start..self.pos);
            }
            // A backslash: whatever it escapes is not the string's end.
            self.pos += 2;
        }
    }

    /// Any value, not read; its range.
    fn value(&mut self) -> Read<Range<usize>> {
        let start = match self.peek() {
            Some(_) => self.pos,
            None => return self.error("a value"),
        };
        self.skip()?;
        Ok(start..self.pos)
    }

    fn skip(&mut self) -> Read<()> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{' | b'[') => self.nested(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                while matches!(
                    self.b.get(self.pos),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.pos += 1;
                }
                let digits = self.b.get(start..self.pos).unwrap_or_default();
                if digits.iter().any(u8::is_ascii_digit) {
                    Ok(())
                } else {
                    self.error("a number")
                }
            }
            _ => self.error("a value"),
        }
    }

    /// An object or array, at its opening bracket, skipped in one flat pass: strings whole,
    /// brackets counted (each closing one against the innermost open one), no recursion.
    /// What lies between (members, commas, scalars) is left to `serde_json` if the value is
    /// ever read.
    fn nested(&mut self) -> Read<()> {
        // The open brackets, innermost last, as bits: 1 an object, 0 an array.
        let mut open: u128 = 0;
        let mut depth = 0u32;
        loop {
            match self.b.get(self.pos) {
                None => return self.error("a closing bracket"),
                Some(b'"') => {
                    self.string()?;
                    continue;
                }
                Some(&b @ (b'{' | b'[')) => {
                    if depth == u128::BITS {
                        return self.error("less nesting");
                    }
                    open = open << 1 | u128::from(b == b'{');
                    depth += 1;
                }
                Some(&b @ (b'}' | b']')) => {
                    if depth == 0 || (open & 1 == 1) != (b == b'}') {
                        return self.error("matching brackets");
                    }
                    open >>= 1;
                    depth -= 1;
                    if depth == 0 {
                        self.pos += 1;
                        return Ok(());
                    }
                }
                Some(_) => {}
            }
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Read<()> {
        if self.b.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.error("`true`, `false` or `null`")
        }
    }

    /// A result object: `fields` (each one's `dataTypeID`) and `rows`.
    fn result(&mut self) -> Read<RawResult> {
        let mut out = RawResult::default();
        self.object(|r, key| match key {
            b"fields" => r.array(|r| {
                let mut type_id = None;
                r.object(|r, key| {
                    if key == b"dataTypeID" {
                        type_id = Some(r.unsigned()?);
                        Ok(())
                    } else {
                        r.skip()
                    }
                })?;
                match type_id {
                    Some(t) => {
                        out.types.push(t);
                        Ok(())
                    }
                    None => r.error("a field's `dataTypeID`"),
                }
            }),
            b"rows" => r.array(|r| {
                let mut row = Vec::new();
                r.array(|r| {
                    let v = r.value()?;
                    row.push((r.b.get(v.clone()) != Some(b"null".as_slice())).then_some(v));
                    Ok(())
                })?;
                out.rows.push(row);
                Ok(())
            }),
            _ => r.skip(),
        })?;
        Ok(out)
    }

    fn unsigned(&mut self) -> Read<u32> {
        self.space();
        let start = self.pos;
        let mut n: u32 = 0;
        while let Some(d @ b'0'..=b'9') = self.b.get(self.pos).copied() {
            n = match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u32::from(d - b'0')))
            {
                Some(n) => n,
                None => return self.error("a type OID"),
            };
            self.pos += 1;
        }
        if self.pos == start {
            return self.error("a type OID");
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'a>(answer: &'a str, r: &RawResult) -> Vec<Vec<Option<&'a str>>> {
        r.rows
            .iter()
            .map(|row| row.iter().map(|v| v.clone().map(|v| &answer[v])).collect())
            .collect()
    }

    #[test]
    fn results_are_read_in_any_order_with_members_skipped() {
        let answer = r#" { "extra": {"a": [1, -2.5e+3, true, false, null, "x\"]"]},
            "results": [
              {"command":"SELECT","rowCount":2,"rowAsArray":true,
               "fields":[{"name":"a","dataTypeID":23,"tableID":0,"format":"text"},
                         {"dataTypeID":3802,"name":"b \" \\"}],
               "rows":[[1,{"k":["v",{"w":null}],"s":"q\"\\"}],[null, "t\\\""]]},
              {"rows":[], "fields":[], "command":"BEGIN"}
            ] } "#;
        let results = batch(answer.as_bytes()).unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].types, vec![23, 3802]);
        assert_eq!(
            texts(answer, &results[0]),
            vec![
                vec![Some("1"), Some(r#"{"k":["v",{"w":null}],"s":"q\"\\"}"#)],
                vec![None, Some(r#""t\\\"""#)],
            ]
        );
        assert_eq!(results[1], RawResult::default());
        let one = r#"{"fields":[{"dataTypeID":25}],"rows":[["1"]]}"#;
        let r = single(one.as_bytes()).unwrap();
        assert_eq!(r.types, vec![25]);
        assert_eq!(texts(one, &r), vec![vec![Some(r#""1""#)]]);
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"results":[{"rows":[[1,]]}]}"#,
            r#"{"results":[{"rows":[[1}]}"#,
            r#"{"results":[{"rows":[["unterminated]]}]}"#,
            r#"{"results":[{"fields":[{"name":"x"}]}]}"#,
            r#"{"results":[{"fields":[{"dataTypeID":99999999999}]}]}"#,
            r#"{"results":[{"rows":[[tru]]}]}"#,
            r#"{"results":[]} x"#,
            r#"{"results":[{"rows":[["\"]]}]}"#,
            r#"{"other":1}"#,
            r#"{"results":[{"rows":[[-]]}]}"#,
            r#"{"results":[{"rows":[[1 2]]}]}"#,
        ] {
            assert!(batch(bad.as_bytes()).is_err(), "{bad}");
        }
        // Deep nesting in a skipped member is refused, not recursed into without end.
        let deep = format!(
            r#"{{"x":{}1{}, "results":[]}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(batch(deep.as_bytes()).is_err());
        let fine = format!(
            r#"{{"x":{}1{}, "results":[]}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(batch(fine.as_bytes()).unwrap(), vec![]);
    }

    /// What is read agrees with `serde_json` on the answers the proxy writes.
    #[test]
    fn values_are_where_serde_json_finds_them() {
        let rows = serde_json::json!([
            [1, "é\u{1F600}\n\t\"\\", null, {"a": [true, 1.5e-7, "]"]}],
            [-0, "", [], {}],
        ]);
        let answer = serde_json::json!({"results": [
            {"command": "SELECT", "fields": [{"dataTypeID": 23}, {"dataTypeID": 25},
             {"dataTypeID": 25}, {"dataTypeID": 114}], "rows": rows}]})
        .to_string();
        let results = batch(answer.as_bytes()).unwrap();
        let read: Vec<Vec<serde_json::Value>> = results[0]
            .rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|v| match v {
                        Some(v) => serde_json::from_str(&answer[v.clone()]).unwrap(),
                        None => serde_json::Value::Null,
                    })
                    .collect()
            })
            .collect();
        assert_eq!(serde_json::to_value(read).unwrap(), rows);
    }
}
