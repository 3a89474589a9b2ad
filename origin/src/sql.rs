//! The pure parts of the protocol: request payloads, batch transaction options from headers,
//! and the result JSON Neon's proxy writes (command tag parsing, field descriptions).

use axum::http::HeaderMap;
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::error::ApiError;
use crate::params::json_to_pg_text;
use crate::pg::{Column, QueryOutput};
use crate::typed::{RowJson, Shape};

pub const HDR_ISOLATION: &str = "neon-batch-isolation-level";
pub const HDR_READ_ONLY: &str = "neon-batch-read-only";
pub const HDR_DEFERRABLE: &str = "neon-batch-deferrable";
pub const HDR_ARRAY_MODE: &str = "neon-array-mode";
pub const HDR_RAW_TEXT_OUTPUT: &str = "neon-raw-text-output";

#[derive(Debug, Deserialize)]
pub struct QueryData {
    pub query: String,
    #[serde(default)]
    pub params: Vec<Value>,
    /// Rows as arrays or objects for this query, over the `Neon-Array-Mode` header.
    #[serde(default, rename = "arrayMode")]
    pub array_mode: Option<bool>,
}

impl QueryData {
    pub fn pg_params(&self) -> Vec<Option<String>> {
        self.params.iter().map(json_to_pg_text).collect()
    }
}

#[derive(Debug, Deserialize)]
pub struct BatchData {
    pub queries: Vec<QueryData>,
}

#[derive(Debug)]
pub enum Payload {
    Single(QueryData),
    Batch(BatchData),
}

/// Parses the body as JSON whatever its Content-Type (the driver sends text/plain).
pub fn parse_payload(body: &[u8]) -> Result<Payload, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))?;
    let bad = |e: serde_json::Error| ApiError::BadRequest(format!("invalid request payload: {e}"));
    if value.get("queries").is_some() {
        Ok(Payload::Batch(serde_json::from_value(value).map_err(bad)?))
    } else {
        Ok(Payload::Single(serde_json::from_value(value).map_err(bad)?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

/// The transaction options of a batch, from the `Neon-Batch-*` headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOptions {
    pub isolation: Option<IsolationLevel>,
    pub read_only: Option<bool>,
    pub deferrable: Option<bool>,
    /// The isolation header as received, to echo it back.
    isolation_raw: Option<String>,
}

impl BatchOptions {
    /// Neon's rules: any value other than exactly `true` is false; an unknown isolation
    /// level is a 400.
    pub fn from_headers(headers: &HeaderMap) -> Result<BatchOptions, ApiError> {
        let flag = |name: &str| headers.get(name).map(|v| v.as_bytes() == b"true");
        let isolation_raw = headers
            .get(HDR_ISOLATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let isolation = match isolation_raw.as_deref() {
            None => None,
            Some("ReadUncommitted") => Some(IsolationLevel::ReadUncommitted),
            Some("ReadCommitted") => Some(IsolationLevel::ReadCommitted),
            Some("RepeatableRead") => Some(IsolationLevel::RepeatableRead),
            Some("Serializable") => Some(IsolationLevel::Serializable),
            Some(_) => return Err(ApiError::BadRequest("invalid isolation level".into())),
        };
        Ok(BatchOptions {
            isolation,
            read_only: flag(HDR_READ_ONLY),
            deferrable: flag(HDR_DEFERRABLE),
            isolation_raw,
        })
    }

    /// The statement that opens the batch's transaction.
    pub fn begin_statement(&self) -> String {
        let mut sql = String::from("BEGIN");
        let mut modes = Vec::new();
        if let Some(level) = self.isolation {
            modes.push(match level {
                IsolationLevel::ReadUncommitted => "ISOLATION LEVEL READ UNCOMMITTED",
                IsolationLevel::ReadCommitted => "ISOLATION LEVEL READ COMMITTED",
                IsolationLevel::RepeatableRead => "ISOLATION LEVEL REPEATABLE READ",
                IsolationLevel::Serializable => "ISOLATION LEVEL SERIALIZABLE",
            });
        }
        if let Some(ro) = self.read_only {
            modes.push(if ro { "READ ONLY" } else { "READ WRITE" });
        }
        if let Some(d) = self.deferrable {
            modes.push(if d { "DEFERRABLE" } else { "NOT DEFERRABLE" });
        }
        if !modes.is_empty() {
            sql.push(' ');
            sql.push_str(&modes.join(", "));
        }
        sql
    }

    /// Headers to echo on the batch response (only those that were sent).
    pub fn echo_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(raw) = &self.isolation_raw {
            out.push((HDR_ISOLATION, raw.clone()));
        }
        if let Some(ro) = self.read_only {
            out.push((HDR_READ_ONLY, ro.to_string()));
        }
        if let Some(d) = self.deferrable {
            out.push((HDR_DEFERRABLE, d.to_string()));
        }
        out
    }
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FieldJson {
    pub name: String,
    #[serde(rename = "dataTypeID")]
    pub data_type_id: u32,
    #[serde(rename = "tableID")]
    pub table_id: u32,
    #[serde(rename = "columnID")]
    pub column_id: i16,
    pub data_type_size: i16,
    pub data_type_modifier: i32,
    pub format: &'static str,
}

impl From<&Column> for FieldJson {
    fn from(c: &Column) -> Self {
        FieldJson {
            name: c.name.clone(),
            data_type_id: c.type_oid,
            table_id: c.table_oid,
            column_id: c.column_id,
            data_type_size: c.type_size,
            data_type_modifier: c.type_modifier,
            format: "text",
        }
    }
}

/// One statement's result as Neon writes it: its rows in the mode the request asked for
/// ([`RowFormat`]; the npm driver always asks for arrays of raw text).
#[derive(Debug, PartialEq, Eq)]
pub struct QueryResult {
    pub command: String,
    pub row_count: Option<i64>,
    pub rows: Vec<Vec<Option<String>>>,
    pub fields: Vec<FieldJson>,
    pub format: RowFormat,
    /// Each column's shape, for typed values (set by [`QueryResult::type_values`]).
    shapes: Option<Vec<Shape>>,
}

/// How rows are written: as arrays (`Neon-Array-Mode: true`, or the query's `arrayMode`) or
/// as objects by column name; with every value raw text (`Neon-Raw-Text-Output: true`) or
/// typed by its column ([`crate::typed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowFormat {
    pub array_mode: bool,
    pub raw_text: bool,
}

impl RowFormat {
    /// What the npm driver always asks for.
    #[cfg(test)]
    pub const DRIVER: RowFormat = RowFormat {
        array_mode: true,
        raw_text: true,
    };

    /// The request's defaults, from its headers: each flag is on only when exactly `true`.
    pub fn from_headers(headers: &HeaderMap) -> RowFormat {
        let flag = |name: &str| headers.get(name).is_some_and(|v| v.as_bytes() == b"true");
        RowFormat {
            array_mode: flag(HDR_ARRAY_MODE),
            raw_text: flag(HDR_RAW_TEXT_OUTPUT),
        }
    }

    /// This format for one query, whose `arrayMode` (if given) overrides the header's.
    pub fn for_query(self, q: &QueryData) -> RowFormat {
        RowFormat {
            array_mode: q.array_mode.unwrap_or(self.array_mode),
            ..self
        }
    }
}

impl QueryResult {
    pub fn from_output(out: QueryOutput, format: RowFormat) -> Self {
        let (command, row_count) = parse_command_tag(out.tag.as_deref().unwrap_or(""));
        QueryResult {
            command,
            row_count,
            fields: out.columns.iter().map(FieldJson::from).collect(),
            rows: out.rows,
            format,
            shapes: None,
        }
    }

    /// The types of the columns whose values are to be typed (none in raw text).
    pub fn typed_columns(&self) -> impl Iterator<Item = u32> + '_ {
        let typed: &[FieldJson] = if self.format.raw_text {
            &[]
        } else {
            &self.fields
        };
        typed.iter().map(|f| f.data_type_id)
    }

    /// Sets each column's shape for typed output; a type `shape` does not know is written as
    /// text.
    pub fn type_values(&mut self, shape: impl Fn(u32) -> Option<Shape>) {
        if !self.format.raw_text {
            self.shapes = Some(
                self.fields
                    .iter()
                    .map(|f| shape(f.data_type_id).unwrap_or(Shape::Scalar(0)))
                    .collect(),
            );
        }
    }
}

impl Serialize for QueryResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Rows<'a>(&'a QueryResult, &'a [String]);
        impl Serialize for Rows<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let r = self.0;
                let mut seq = s.serialize_seq(Some(r.rows.len()))?;
                for values in &r.rows {
                    seq.serialize_element(&RowJson {
                        values,
                        names: self.1,
                        shapes: r.shapes.as_deref(),
                        array_mode: r.format.array_mode,
                    })?;
                }
                seq.end()
            }
        }
        let names: Vec<String> = if self.format.array_mode {
            Vec::new()
        } else {
            self.fields.iter().map(|f| f.name.clone()).collect()
        };
        let mut st = s.serialize_struct("QueryResult", 5)?;
        st.serialize_field("command", &self.command)?;
        st.serialize_field("rowCount", &self.row_count)?;
        st.serialize_field("rows", &Rows(self, &names))?;
        st.serialize_field("fields", &self.fields)?;
        st.serialize_field("rowAsArray", &self.format.array_mode)?;
        st.end()
    }
}

#[derive(Debug, Serialize)]
pub struct BatchResult {
    pub results: Vec<QueryResult>,
}

/// Splits a command tag the way Neon's proxy does: the first word is the command; the count
/// is the next word, except for `INSERT oid rows` where it is the third; a non-number
/// (`CREATE TABLE`) gives `null`.
pub fn parse_command_tag(tag: &str) -> (String, Option<i64>) {
    let mut words = tag.split(' ');
    let command = words.next().unwrap_or_default().to_owned();
    let count = if command == "INSERT" {
        words.nth(1)
    } else {
        words.next()
    };
    (command, count.and_then(|c| c.parse::<i64>().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn command_tags() {
        assert_eq!(parse_command_tag("SELECT 3"), ("SELECT".into(), Some(3)));
        assert_eq!(parse_command_tag("INSERT 0 2"), ("INSERT".into(), Some(2)));
        assert_eq!(parse_command_tag("UPDATE 0"), ("UPDATE".into(), Some(0)));
        assert_eq!(parse_command_tag("CREATE TABLE"), ("CREATE".into(), None));
        assert_eq!(parse_command_tag("BEGIN"), ("BEGIN".into(), None));
        assert_eq!(parse_command_tag("COPY 5"), ("COPY".into(), Some(5)));
        assert_eq!(parse_command_tag(""), ("".into(), None));
    }

    #[test]
    fn payloads() {
        match parse_payload(br#"{"query":"SELECT $1","params":["1",null,2,true]}"#).unwrap() {
            Payload::Single(q) => {
                assert_eq!(q.query, "SELECT $1");
                assert_eq!(
                    q.pg_params(),
                    vec![
                        Some("1".into()),
                        None,
                        Some("2".into()),
                        Some("true".into())
                    ]
                );
            }
            Payload::Batch(_) => panic!("expected single"),
        }
        match parse_payload(
            br#"{"queries":[{"query":"SELECT 1","params":[]},{"query":"SELECT 2"}]}"#,
        )
        .unwrap()
        {
            Payload::Batch(b) => assert_eq!(b.queries.len(), 2),
            Payload::Single(_) => panic!("expected batch"),
        }
        assert!(parse_payload(b"not json").is_err());
        assert!(parse_payload(br#"{"params":[]}"#).is_err());
        assert!(parse_payload(br#"{"queries":"x"}"#).is_err());
    }

    #[test]
    fn batch_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(
            BatchOptions::from_headers(&h).unwrap().begin_statement(),
            "BEGIN"
        );
        h.insert(HDR_ISOLATION, HeaderValue::from_static("Serializable"));
        h.insert(HDR_READ_ONLY, HeaderValue::from_static("true"));
        h.insert(HDR_DEFERRABLE, HeaderValue::from_static("TRUE"));
        let o = BatchOptions::from_headers(&h).unwrap();
        assert_eq!(o.read_only, Some(true));
        assert_eq!(o.deferrable, Some(false), "only exactly `true` is true");
        assert_eq!(
            o.begin_statement(),
            "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, NOT DEFERRABLE"
        );
        assert_eq!(
            o.echo_headers(),
            vec![
                (HDR_ISOLATION, "Serializable".to_owned()),
                (HDR_READ_ONLY, "true".to_owned()),
                (HDR_DEFERRABLE, "false".to_owned())
            ]
        );
        h.insert(HDR_ISOLATION, HeaderValue::from_static("serializable"));
        let err = BatchOptions::from_headers(&h).unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn result_json_shape() {
        let out = QueryOutput {
            columns: vec![Column {
                name: "i4".into(),
                table_oid: 0,
                column_id: 0,
                type_oid: 23,
                type_size: 4,
                type_modifier: -1,
            }],
            rows: vec![vec![Some("42".into())], vec![None]],
            tag: Some("SELECT 2".into()),
        };
        let v = serde_json::to_value(QueryResult::from_output(out, RowFormat::DRIVER)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "command": "SELECT", "rowCount": 2, "rowAsArray": true,
                "fields": [{"name": "i4", "dataTypeID": 23, "tableID": 0, "columnID": 0,
                            "dataTypeSize": 4, "dataTypeModifier": -1, "format": "text"}],
                "rows": [["42"], [null]]
            })
        );
    }
}
