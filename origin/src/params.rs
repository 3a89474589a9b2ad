//! Converts request parameters to Postgres text input. The npm driver always sends strings or
//! null; other clients may send native JSON values, converted like Neon's `json_to_pg_text`.

use serde_json::Value;

/// One parameter as Postgres text input (`None` is SQL NULL).
pub fn json_to_pg_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        // Strings are passed verbatim: they are a bound parameter, not SQL, so no escaping.
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) | Value::Object(_) => Some(value.to_string()),
        Value::Array(items) => Some(pg_array_literal(items)),
    }
}

/// Builds a Postgres array literal: `[1,"a\"b",null,[2]]` → `{"1","a\"b",NULL,{"2"}}`.
///
/// Every element is double-quoted with `\` and `"` backslash-escaped, which is what
/// node-postgres' `prepareValue` does and what `array_in` expects. (Neon quotes elements with
/// JSON string syntax, which differs for control characters such as `\n`; this keeps them.)
fn pg_array_literal(items: &[Value]) -> String {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Null => out.push_str("NULL"),
            Value::Array(inner) => out.push_str(&pg_array_literal(inner)),
            Value::String(s) => push_quoted(&mut out, s),
            other => push_quoted(&mut out, &other.to_string()),
        }
    }
    out.push('}');
    out
}

fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars() {
        assert_eq!(json_to_pg_text(&json!(null)), None);
        assert_eq!(json_to_pg_text(&json!("a'b\"c")), Some("a'b\"c".into()));
        assert_eq!(json_to_pg_text(&json!(true)), Some("true".into()));
        assert_eq!(json_to_pg_text(&json!(42)), Some("42".into()));
        assert_eq!(json_to_pg_text(&json!(1.5)), Some("1.5".into()));
        assert_eq!(
            json_to_pg_text(&json!({"a": [1, 2]})),
            Some(r#"{"a":[1,2]}"#.into())
        );
    }

    #[test]
    fn arrays() {
        assert_eq!(
            json_to_pg_text(&json!([1, 2, null])),
            Some(r#"{"1","2",NULL}"#.into())
        );
        assert_eq!(
            json_to_pg_text(&json!(["a\"b", "c\\d"])),
            Some(r#"{"a\"b","c\\d"}"#.into())
        );
        assert_eq!(
            json_to_pg_text(&json!([[1, 2], [3, null]])),
            Some(r#"{{"1","2"},{"3",NULL}}"#.into())
        );
        assert_eq!(
            json_to_pg_text(&json!([{"k": "v"}, true])),
            Some(r#"{"{\"k\":\"v\"}","true"}"#.into())
        );
        assert_eq!(json_to_pg_text(&json!([])), Some("{}".into()));
        assert_eq!(
            json_to_pg_text(&json!(["line\nbreak"])),
            Some("{\"line\nbreak\"}".into())
        );
    }
}
