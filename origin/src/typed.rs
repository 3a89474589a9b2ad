//! How a result's values are written. With `Neon-Raw-Text-Output: true` (what the npm driver
//! always sends) every value is Postgres' text output as a JSON string. Without it, as Neon's
//! proxy does, a value is typed by its column: `bool` a JSON boolean, `int2` and `int4` numbers,
//! `float4` and `float8` numbers (`NaN` and the infinities stay strings), `json` and `jsonb`
//! the document itself, an array a JSON array of its elements typed the same way, and any
//! other type (`int8` and `numeric` included, which a JSON number could round) a string.
//!
//! An array is known by its type: the array types Postgres fixes (OIDs below 10,000) are in
//! [`BUILTIN_ARRAYS`]; any other type (an extension's, a user's) is looked up in the database's
//! catalog the first time it is met ([`Shapes`]), on the session that answered, and remembered
//! per database.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

pub const BOOL: u32 = 16;
pub const INT2: u32 = 21;
pub const INT4: u32 = 23;
pub const JSON: u32 = 114;
pub const FLOAT4: u32 = 700;
pub const FLOAT8: u32 = 701;
pub const JSONB: u32 = 3802;
const BOX: u32 = 603;

/// OIDs below this are fixed by Postgres itself (`FirstGenbkiObjectId`); the others are
/// assigned by `initdb` or `CREATE TYPE` and can differ between databases.
pub const FIRST_ASSIGNED_OID: u32 = 10_000;

/// Every array type with a fixed OID, as (array, element), from Postgres 15's `pg_type`
/// (`typelem`, where the element's `typarray` is the array: `int2vector` and `oidvector`, whose
/// text is not an array literal, are not among them). A test checks it against the catalog.
pub const BUILTIN_ARRAYS: &[(u32, u32)] = &[
    (143, 142),
    (199, 114),
    (210, 71),
    (270, 75),
    (271, 5069),
    (272, 81),
    (273, 83),
    (629, 628),
    (651, 650),
    (719, 718),
    (775, 774),
    (791, 790),
    (1000, 16),
    (1001, 17),
    (1002, 18),
    (1003, 19),
    (1005, 21),
    (1006, 22),
    (1007, 23),
    (1008, 24),
    (1009, 25),
    (1010, 27),
    (1011, 28),
    (1012, 29),
    (1013, 30),
    (1014, 1042),
    (1015, 1043),
    (1016, 20),
    (1017, 600),
    (1018, 601),
    (1019, 602),
    (1020, 603),
    (1021, 700),
    (1022, 701),
    (1027, 604),
    (1028, 26),
    (1034, 1033),
    (1040, 829),
    (1041, 869),
    (1115, 1114),
    (1182, 1082),
    (1183, 1083),
    (1185, 1184),
    (1187, 1186),
    (1231, 1700),
    (1263, 2275),
    (1270, 1266),
    (1561, 1560),
    (1563, 1562),
    (2201, 1790),
    (2207, 2202),
    (2208, 2203),
    (2209, 2204),
    (2210, 2205),
    (2211, 2206),
    (2287, 2249),
    (2949, 2970),
    (2951, 2950),
    (3221, 3220),
    (3643, 3614),
    (3644, 3642),
    (3645, 3615),
    (3735, 3734),
    (3770, 3769),
    (3807, 3802),
    (3905, 3904),
    (3907, 3906),
    (3909, 3908),
    (3911, 3910),
    (3913, 3912),
    (3927, 3926),
    (4073, 4072),
    (4090, 4089),
    (4097, 4096),
    (4192, 4191),
    (5039, 5038),
    (6150, 4451),
    (6151, 4532),
    (6152, 4533),
    (6153, 4534),
    (6155, 4535),
    (6157, 4536),
];

/// What a column's values are, for typed output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One value of this type.
    Scalar(u32),
    /// An array literal of elements of this type, separated by `delimiter` (`,` for every
    /// type but `box`).
    Array { element: u32, delimiter: u8 },
}

impl Shape {
    /// The shape of a type Postgres fixes; `None` for one to look up.
    pub fn builtin(oid: u32) -> Option<Shape> {
        if oid >= FIRST_ASSIGNED_OID {
            return None;
        }
        Some(
            match BUILTIN_ARRAYS.binary_search_by_key(&oid, |&(array, _)| array) {
                Ok(i) => {
                    let element = BUILTIN_ARRAYS.get(i).map_or(0, |&(_, e)| e);
                    Shape::Array {
                        element,
                        delimiter: if element == BOX { b';' } else { b',' },
                    }
                }
                Err(_) => Shape::Scalar(oid),
            },
        )
    }
}

/// The shapes of the types met so far outside [`BUILTIN_ARRAYS`], per database.
#[derive(Debug, Default)]
pub struct Shapes {
    known: Mutex<HashMap<(String, u32), Shape>>,
}

/// The catalog query behind [`Shapes`]: which of the given types are arrays, of what, split by
/// what. An element whose `typarray` is not the type (`int2vector`) makes no array.
pub const LOOKUP: &str = "SELECT t.oid::text, e.oid::text, e.typdelim::text \
     FROM pg_catalog.pg_type t JOIN pg_catalog.pg_type e \
     ON e.oid = t.typelem AND e.typarray = t.oid \
     WHERE t.oid = ANY($1::oid[])";

impl Shapes {
    /// `oid`'s shape in `database`, if it is fixed or was looked up.
    pub fn get(&self, database: &str, oid: u32) -> Option<Shape> {
        Shape::builtin(oid).or_else(|| self.lock().get(&(database.to_owned(), oid)).copied())
    }

    /// Of `oids`, those whose shape is not known yet, each once, in order.
    pub fn unknown(&self, database: &str, oids: impl Iterator<Item = u32>) -> Vec<u32> {
        let mut missing: Vec<u32> = oids.filter(|&o| self.get(database, o).is_none()).collect();
        missing.sort_unstable();
        missing.dedup();
        missing
    }

    /// Records what [`LOOKUP`] answered about `asked`: the types in `rows` are arrays, every
    /// other one asked about is a scalar.
    pub fn learn(&self, database: &str, asked: &[u32], rows: &[Vec<Option<String>>]) {
        let mut known = self.lock();
        for &oid in asked {
            known.insert((database.to_owned(), oid), Shape::Scalar(oid));
        }
        for row in rows {
            let [Some(oid), Some(element), Some(delimiter)] = row.as_slice() else {
                continue;
            };
            let (Ok(oid), Ok(element)) = (oid.parse::<u32>(), element.parse::<u32>()) else {
                continue;
            };
            let delimiter = delimiter.bytes().next().unwrap_or(b',');
            known.insert(
                (database.to_owned(), oid),
                Shape::Array { element, delimiter },
            );
        }
    }

    /// [`LOOKUP`]'s parameter: `oids` as an `oid[]` literal, `{1,2}`.
    pub fn oid_array(oids: &[u32]) -> String {
        let list: Vec<String> = oids.iter().map(u32::to_string).collect();
        format!("{{{}}}", list.join(","))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Shape>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One non-NULL value in typed output.
pub struct Typed<'a> {
    pub text: &'a str,
    pub shape: Shape,
}

impl Serialize for Typed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.shape {
            Shape::Scalar(oid) => scalar(s, self.text, oid),
            Shape::Array { element, delimiter } => {
                let items = parse_array(self.text, delimiter).map_err(S::Error::custom)?;
                Items {
                    items: &items,
                    element,
                }
                .serialize(s)
            }
        }
    }
}

fn scalar<S: Serializer>(s: S, text: &str, oid: u32) -> Result<S::Ok, S::Error> {
    match oid {
        BOOL => s.serialize_bool(text == "t"),
        INT2 | INT4 => s.serialize_i32(
            text.parse()
                .map_err(|e| S::Error::custom(format!("int {text:?}: {e}")))?,
        ),
        FLOAT4 | FLOAT8 => {
            let f: f64 = text
                .parse()
                .map_err(|e| S::Error::custom(format!("float {text:?}: {e}")))?;
            if f.is_finite() {
                s.serialize_f64(f)
            } else {
                // NaN and the infinities have no JSON number.
                s.serialize_str(text)
            }
        }
        // Postgres only outputs valid JSON for these; checked all the same, so the answer
        // is always JSON.
        JSON | JSONB => serde_json::from_str::<&RawValue>(text)
            .map_err(|e| S::Error::custom(format!("json value: {e}")))?
            .serialize(s),
        _ => s.serialize_str(text),
    }
}

/// An element of an array literal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Null,
    Text(String),
    List(Vec<Item>),
}

struct Items<'a> {
    items: &'a [Item],
    element: u32,
}

impl Serialize for Items<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.items.len()))?;
        for item in self.items {
            match item {
                Item::Null => seq.serialize_element(&None::<()>)?,
                Item::Text(text) => seq.serialize_element(&Typed {
                    text,
                    shape: Shape::Scalar(self.element),
                })?,
                Item::List(items) => seq.serialize_element(&Items {
                    items,
                    element: self.element,
                })?,
            }
        }
        seq.end()
    }
}

/// Reads an array's text output (`{1,NULL,"a b"}`, nested for more dimensions, after
/// `[lower:upper]=` when a lower bound is not 1, which JSON cannot carry and is dropped).
/// Quoted elements are unescaped; an unquoted `NULL` is SQL NULL; `{}` is empty.
fn parse_array(text: &str, delimiter: u8) -> Result<Vec<Item>, String> {
    let mut text = text.trim_start();
    if text.starts_with('[') {
        text = match text.split_once('=') {
            Some((_, rest)) => rest.trim_start(),
            None => return Err(format!("array bounds without `=`: {text:?}")),
        };
    }
    let mut p = ArrayParser {
        bytes: text.as_bytes(),
        pos: 0,
        delimiter,
    };
    let items = p.list()?;
    p.skip_space();
    if p.pos == p.bytes.len() {
        Ok(items)
    } else {
        Err(format!("text after the array: {text:?}"))
    }
}

struct ArrayParser<'a> {
    bytes: &'a [u8],
    pos: usize,
    delimiter: u8,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn unbalanced(&self) -> String {
        format!("unbalanced array at byte {}", self.pos)
    }

    /// `{…}`, at the opening brace.
    fn list(&mut self) -> Result<Vec<Item>, String> {
        if self.peek() != Some(b'{') {
            return Err(self.unbalanced());
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            self.skip_space();
            let item = match self.peek() {
                Some(b'{') => Item::List(self.list()?),
                Some(b'"') => Item::Text(self.quoted()?),
                _ => self.unquoted()?,
            };
            items.push(item);
            self.skip_space();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(items);
                }
                Some(b) if b == self.delimiter => self.pos += 1,
                _ => return Err(self.unbalanced()),
            }
        }
    }

    /// `"…"`, at the opening quote: `\` takes the next character as it is.
    fn quoted(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unbalanced quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    let escaped = self.bytes.get(self.pos + 1).copied();
                    let Some(b) = escaped else {
                        return Err("unbalanced quoted string".into());
                    };
                    out.push(b);
                    self.pos += 2;
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    }

    /// An element up to the delimiter or `}`, trailing spaces dropped; `NULL` is SQL NULL.
    fn unquoted(&mut self) -> Result<Item, String> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.unbalanced()),
                Some(b'}') => break,
                Some(b) if b == self.delimiter => break,
                Some(b'\\') => {
                    let Some(b) = self.bytes.get(self.pos + 1).copied() else {
                        return Err(self.unbalanced());
                    };
                    out.push(b);
                    self.pos += 2;
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        while out.last().is_some_and(|b| b.is_ascii_whitespace()) {
            out.pop();
        }
        if out.eq_ignore_ascii_case(b"NULL") {
            return Ok(Item::Null);
        }
        String::from_utf8(out)
            .map(Item::Text)
            .map_err(|e| e.to_string())
    }
}

/// A row in either of Neon's row modes: a JSON array of its values, or an object of them by
/// column name (`Neon-Array-Mode`, or a query's `arrayMode`). Values are raw text when
/// `shapes` is `None`.
pub struct RowJson<'a> {
    pub values: &'a [Option<String>],
    pub names: &'a [String],
    pub shapes: Option<&'a [Shape]>,
    pub array_mode: bool,
}

struct Value<'a> {
    text: Option<&'a str>,
    shape: Option<Shape>,
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.text, self.shape) {
            (None, _) => s.serialize_none(),
            (Some(text), None) => s.serialize_str(text),
            (Some(text), Some(shape)) => Typed { text, shape }.serialize(s),
        }
    }
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let value = |i: usize| Value {
            text: self.values.get(i).and_then(|v| v.as_deref()),
            shape: self.shapes.and_then(|shapes| shapes.get(i).copied()),
        };
        if self.array_mode {
            let mut seq = s.serialize_seq(Some(self.values.len()))?;
            for i in 0..self.values.len() {
                seq.serialize_element(&value(i))?;
            }
            seq.end()
        } else {
            // As Neon: one member per column, a repeated name repeated.
            let mut map = s.serialize_map(Some(self.values.len()))?;
            for i in 0..self.values.len() {
                let name = self.names.get(i).map_or("", String::as_str);
                map.serialize_entry(name, &value(i))?;
            }
            map.end()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn typed(text: &str, oid: u32) -> serde_json::Value {
        let shape = Shape::builtin(oid).unwrap();
        serde_json::to_value(Typed { text, shape }).unwrap()
    }

    #[test]
    fn scalars_are_typed_as_neon_types_them() {
        assert_eq!(typed("t", BOOL), json!(true));
        assert_eq!(typed("f", BOOL), json!(false));
        assert_eq!(typed("-32768", INT2), json!(-32768));
        assert_eq!(typed("2147483647", INT4), json!(2147483647));
        assert_eq!(
            typed("9223372036854775807", 20),
            json!("9223372036854775807")
        );
        assert_eq!(typed("0.1", FLOAT4), json!(0.1));
        assert_eq!(typed("1e+300", FLOAT8), json!(1e300));
        assert_eq!(typed("NaN", FLOAT8), json!("NaN"));
        assert_eq!(typed("-Infinity", FLOAT4), json!("-Infinity"));
        assert_eq!(
            typed("12.50", 1700),
            json!("12.50"),
            "numeric keeps its digits"
        );
        assert_eq!(typed(r#"{"a": [1, "x"]}"#, JSONB), json!({"a": [1, "x"]}));
        assert_eq!(typed(" [1,2] ", JSON), json!([1, 2]));
        assert_eq!(typed("null", JSON), json!(null));
        assert_eq!(typed("hello \"x\"", 25), json!("hello \"x\""));
        // A JSON document is written as it is, not re-encoded.
        let shape = Shape::builtin(JSONB).unwrap();
        let text = r#"{"b": 1, "a": 1.50}"#;
        assert_eq!(serde_json::to_string(&Typed { text, shape }).unwrap(), text);
        assert!(serde_json::to_value(Typed {
            text: "12x",
            shape: Shape::Scalar(INT4)
        })
        .is_err());
    }

    #[test]
    fn arrays_are_json_arrays_of_typed_elements() {
        assert_eq!(typed("{1,NULL,3}", 1007), json!([1, null, 3]));
        assert_eq!(typed("{}", 1007), json!([]));
        assert_eq!(typed("{}", 1009), json!([]));
        assert_eq!(typed("{t,f}", 1000), json!([true, false]));
        assert_eq!(typed("{1,2}", 1016), json!(["1", "2"]), "int8 as strings");
        assert_eq!(typed("{NaN,1.5}", 1022), json!(["NaN", 1.5]));
        assert_eq!(
            typed(r#"{"a b","","NULL",NULL,"q\"\\",plain}"#, 1009),
            json!(["a b", "", "NULL", null, "q\"\\", "plain"])
        );
        assert_eq!(
            typed("{{1,2},{3,NULL}}", 1005),
            json!([[1, 2], [3, null]]),
            "dimensions nest"
        );
        assert_eq!(
            typed("[0:1]={7,8}", 1007),
            json!([7, 8]),
            "bounds are dropped"
        );
        assert_eq!(
            typed(r#"{"{\"k\": 1}","[true]",NULL}"#, 3807),
            json!([{"k": 1}, [true], null])
        );
        assert_eq!(
            typed("{(1,1),(0,0);(2,2),(1,1)}", 1020),
            json!(["(1,1),(0,0)", "(2,2),(1,1)"]),
            "box arrays are split at `;`"
        );
        assert_eq!(typed("{é,\"ü ß\"}", 1009), json!(["é", "ü ß"]));
        for bad in ["{1,2", "1,2}", "{1,2}x", "{\"a}", "[1:2]{1,2}", "{{1},2"] {
            assert!(
                serde_json::to_value(Typed {
                    text: bad,
                    shape: Shape::builtin(1007).unwrap()
                })
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn builtin_shapes() {
        assert!(BUILTIN_ARRAYS.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        assert_eq!(Shape::builtin(25), Some(Shape::Scalar(25)));
        assert_eq!(Shape::builtin(22), Some(Shape::Scalar(22)), "int2vector");
        assert_eq!(
            Shape::builtin(1007),
            Some(Shape::Array {
                element: 23,
                delimiter: b','
            })
        );
        assert_eq!(Shape::builtin(16_385), None);
    }

    #[test]
    fn looked_up_shapes_are_remembered_per_database() {
        let shapes = Shapes::default();
        let asked = shapes.unknown("db", [16_390, 25, 16_391, 16_390].into_iter());
        assert_eq!(asked, vec![16_390, 16_391]);
        assert_eq!(Shapes::oid_array(&asked), "{16390,16391}");
        shapes.learn(
            "db",
            &asked,
            &[vec![
                Some("16390".into()),
                Some("16389".into()),
                Some(",".into()),
            ]],
        );
        assert_eq!(
            shapes.get("db", 16_390),
            Some(Shape::Array {
                element: 16_389,
                delimiter: b','
            })
        );
        assert_eq!(shapes.get("db", 16_391), Some(Shape::Scalar(16_391)));
        assert_eq!(shapes.get("other", 16_390), None);
        assert_eq!(
            shapes.unknown("db", [16_390, 16_391].into_iter()),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn rows_in_both_modes() {
        let values = vec![Some("1".to_owned()), None, Some("t".to_owned())];
        let names = vec!["a".to_owned(), "b".to_owned(), "a".to_owned()];
        let shapes = [Shape::Scalar(INT4), Shape::Scalar(25), Shape::Scalar(BOOL)];
        let row = |shapes, array_mode| {
            serde_json::to_string(&RowJson {
                values: &values,
                names: &names,
                shapes,
                array_mode,
            })
            .unwrap()
        };
        assert_eq!(row(None, true), r#"["1",null,"t"]"#);
        assert_eq!(row(Some(&shapes[..]), true), r#"[1,null,true]"#);
        assert_eq!(
            row(Some(&shapes[..]), false),
            r#"{"a":1,"b":null,"a":true}"#
        );
        assert_eq!(row(None, false), r#"{"a":"1","b":null,"a":"t"}"#);
    }
}
