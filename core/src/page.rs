//! The one keyset pager behind every list endpoint (catalog, storefront, files,
//! conversations, messages). A page is ordered by (sort key, id); its opaque cursor carries the
//! sort's name and the last row's key and id, so the next page continues strictly after it:
//! rows inserted meanwhile never make a page repeat or skip one. Each list names its orders
//! in a `&'static [Sort]` table and its rows' document; the pager writes the rest of the query.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ids::Uuid;
use crate::input::{encode_cursor, QueryString};
use crate::sql::{Params, QueryResult, SqlError, Statement};

/// One listing order.
#[derive(Debug)]
pub struct Sort {
    /// As clients name it in `sort=` (and as cursors remember it): `-created_at`.
    pub name: &'static str,
    /// The column ordered by: `i.created_at`.
    pub column: &'static str,
    /// The column as text, for the cursor: `public.iso_utc(i.created_at)`.
    pub key: &'static str,
    /// The column's type, to read the cursor's text back: `timestamptz`.
    pub cast: &'static str,
    pub descending: bool,
}

impl Sort {
    /// Whether `key` is a value of this sort's column as the pager writes it, so that a forged
    /// cursor is a 400 here and never reaches the database as a cast that fails there.
    fn accepts(&self, key: &str) -> bool {
        match self.cast {
            "timestamptz" => is_iso_utc(key),
            "numeric" => crate::input::parse_decimal(key, 9, 3).is_ok(),
            "uuid" => Uuid::parse(key).is_some(),
            _ => key.chars().count() <= 256 && !key.contains(char::from(0)),
        }
    }
}

/// `public.iso_utc`'s form: `2026-12-02T15:35:12.456789Z`, a date Postgres has too (no year 0:
/// the proleptic calendar has one, Postgres' goes from 1 BC to 1 AD).
fn is_iso_utc(s: &str) -> bool {
    let b = s.as_bytes();
    if b.starts_with(b"0000") {
        return false;
    }
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() == 27
        && digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19)
        && b.get(19) == Some(&b'.')
        && digits(20..26)
        && b.get(26) == Some(&b'Z')
        && civil_of(s).is_some_and(|c| c.is_valid())
}

/// The civil time an [`is_iso_utc`]-shaped text names, not yet checked against the calendar.
fn civil_of(s: &str) -> Option<crate::rfc3339::Civil> {
    let number = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    Some(crate::rfc3339::Civil {
        year: i64::from(number(0..4)?),
        month: number(5..7)?,
        day: number(8..10)?,
        hour: number(11..13)?,
        minute: number(14..16)?,
        second: number(17..19)?,
    })
}

/// A validated page request: order, size, and where the previous page ended.
#[derive(Debug)]
pub struct PageRequest {
    sort: &'static Sort,
    limit: i64,
    after: Option<(String, Uuid)>,
}

/// Page sizes every list accepts.
pub const MAX_LIMIT: i64 = 100;

impl PageRequest {
    /// Reads `sort` (when there is more than one order), `limit` and `cursor`. The first sort
    /// is the default. A cursor from another order is refused rather than misread.
    pub fn read(q: &mut QueryString, sorts: &'static [Sort], default_limit: i64) -> Self {
        let fallback = sorts.first().unwrap_or(&NO_SORT);
        let sort = if sorts.len() > 1 {
            let names: Vec<&str> = sorts.iter().map(|s| s.name).collect();
            q.one_of("sort", &names)
                .and_then(|n| sorts.iter().find(|s| s.name == n))
                .unwrap_or(fallback)
        } else {
            fallback
        };
        let limit = q.integer("limit", 1, MAX_LIMIT, default_limit);
        let after = match q.cursor("cursor") {
            Some(key) => match key.as_slice() {
                [name, k, id] if name == sort.name && sort.accepts(k) => {
                    Uuid::parse(id).map(|id| (k.clone(), id))
                }
                _ => None,
            }
            .or_else(|| {
                q.error(
                    "cursor",
                    "invalid_cursor",
                    "belongs to another sort order or is malformed",
                );
                None
            }),
            None => None,
        };
        Self { sort, limit, after }
    }

    pub fn limit(&self) -> i64 {
        self.limit
    }

    /// The page's statement: `select` (whose `filters` are already bound in `params`) narrowed
    /// to the rows after the cursor, in order, one extra row to tell whether more follow.
    /// Each row is one document `{doc, key, id}`.
    pub fn statement(&self, select: Select<'_>, mut params: Params) -> Statement {
        let Select {
            doc,
            from,
            id,
            mut filters,
        } = select;
        let (cmp, dir) = if self.sort.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        if let Some((k, after_id)) = &self.after {
            let k = params.bind(k.clone());
            let after_id = params.bind(after_id.as_str());
            filters.push(format!(
                "({}, {id}) {cmp} ({k}::{}, {after_id}::uuid)",
                self.sort.column, self.sort.cast
            ));
        }
        let limit = params.bind((self.limit + 1).to_string());
        let filters = if filters.is_empty() {
            "true".to_owned()
        } else {
            filters.join(" AND ")
        };
        let query = format!(
            "SELECT json_build_object('doc', {doc}, 'key', {key}, 'id', {id}) AS row \
             FROM {from} WHERE {filters} \
             ORDER BY {col} {dir}, {id} {dir} LIMIT {limit}::int",
            key = self.sort.key,
            col = self.sort.column,
        );
        Statement::new(query, params.into_vec())
    }

    /// The page from the statement's rows.
    pub fn page<T: DeserializeOwned>(&self, result: &QueryResult) -> Result<Page<T>, SqlError> {
        Ok(self.page_of(result.docs::<Keyed<T>>()?))
    }

    fn page_of<T>(&self, mut rows: Vec<Keyed<T>>) -> Page<T> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = match rows.last() {
            Some(last) if more => Some(encode_cursor(&[
                self.sort.name.to_owned(),
                last.key.clone(),
                last.id.to_string(),
            ])),
            _ => None,
        };
        Page {
            items: rows.into_iter().map(|r| r.doc).collect(),
            next_cursor,
        }
    }
}

const NO_SORT: Sort = Sort {
    name: "id",
    column: "id",
    key: "id::text",
    cast: "uuid",
    descending: false,
};

/// What a list selects: its rows' document, the table (with alias) and its id column, and
/// the filters (SQL conditions whose values are bound in the accompanying [`Params`]).
pub struct Select<'s> {
    pub doc: &'s str,
    pub from: &'s str,
    pub id: &'s str,
    pub filters: Vec<String>,
}

/// One row of a page query.
#[derive(Deserialize)]
struct Keyed<T> {
    doc: T,
    key: String,
    id: Uuid,
}

/// `{items, next_cursor}`, the shape of every list response.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The same page with every item transformed (presigned URLs added, …).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::decode_cursor;

    const SORTS: &[Sort] = &[
        Sort {
            name: "-created_at",
            column: "t.created_at",
            key: "public.iso_utc(t.created_at)",
            cast: "timestamptz",
            descending: true,
        },
        Sort {
            name: "name",
            column: "t.name",
            key: "t.name",
            cast: "text",
            descending: false,
        },
    ];

    fn request(uri: &str) -> Result<PageRequest, crate::error::ApiError> {
        let mut q = QueryString::parse(&uri.parse().unwrap());
        let p = PageRequest::read(&mut q, SORTS, 20);
        q.finish().map(|()| p)
    }

    fn select() -> Select<'static> {
        Select {
            doc: "t.doc",
            from: "public.things t",
            id: "t.id",
            filters: vec!["t.live".into()],
        }
    }

    const ID: &str = "00000000-0000-4000-8000-000000000001";

    #[test]
    fn cursors_continue_strictly_after_the_last_row_in_the_same_order() {
        let c = encode_cursor(&["name".into(), "Shoe".into(), ID.into()]);
        let p = request(&format!("/x?sort=name&cursor={c}&limit=5")).unwrap();
        let s = p.statement(select(), Params::new());
        assert!(
            s.query
                .contains("WHERE t.live AND (t.name, t.id) > ($1::text, $2::uuid)"),
            "{}",
            s.query
        );
        assert!(s
            .query
            .contains("ORDER BY t.name ASC, t.id ASC LIMIT $3::int"));
        assert_eq!(
            s.params,
            vec![Some("Shoe".into()), Some(ID.into()), Some("6".into())]
        );
        // A cursor of another order is refused, not misread.
        assert!(request(&format!("/x?cursor={c}")).is_err());
        assert!(request("/x?cursor=zzz").is_err());
    }

    #[test]
    fn newest_first_is_the_default_and_compares_downwards() {
        let p = request("/x").unwrap();
        let s = p.statement(select(), Params::new());
        assert!(s.query.contains("ORDER BY t.created_at DESC, t.id DESC"));
        assert!(!s.query.contains(" < ("));
        let c = encode_cursor(&[
            "-created_at".into(),
            "2026-01-01T00:00:00.000000Z".into(),
            ID.into(),
        ]);
        let s = request(&format!("/x?cursor={c}"))
            .unwrap()
            .statement(select(), Params::new());
        assert!(s
            .query
            .contains("(t.created_at, t.id) < ($1::timestamptz, $2::uuid)"));
    }

    #[test]
    fn forged_cursor_keys_are_refused_before_any_sql() {
        let forged = |sort: &str, key: &str| {
            let c = encode_cursor(&[sort.into(), key.into(), ID.into()]);
            request(&format!("/x?sort={sort}&cursor={c}"))
        };
        // What the database would have failed to cast (and echoed back) is a 400 here.
        for key in [
            "garbage",
            "2026-13-40T99:00:00.000000Z",
            "2026-12-02",
            "1e9",
            "",
            // A date the proleptic calendar has and Postgres has not.
            "0000-01-01T00:00:00.000000Z",
        ] {
            assert!(forged("-created_at", key).is_err(), "{key:?}");
        }
        assert!(forged("-created_at", "0001-01-01T00:00:00.000000Z").is_ok());
        assert!(forged("-created_at", "2026-12-02T15:35:12.456789Z").is_ok());
        assert!(forged("name", "any text at all").is_ok());
        assert!(forged("name", &"x".repeat(257)).is_err());
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_rows_follow() {
        let p = request("/x?limit=2").unwrap();
        let row = |n: u8| Keyed {
            doc: n,
            key: format!("k{n}"),
            id: Uuid::parse(&format!("00000000-0000-4000-8000-00000000000{n}")).unwrap(),
        };
        let full = p.page_of(vec![row(1), row(2), row(3)]);
        assert_eq!(full.items, vec![1, 2]);
        let key = decode_cursor(full.next_cursor.as_deref().unwrap()).unwrap();
        assert_eq!(
            key,
            vec![
                "-created_at".to_owned(),
                "k2".to_owned(),
                "00000000-0000-4000-8000-000000000002".to_owned()
            ]
        );
        let last = p.page_of(vec![row(1), row(2)]);
        assert_eq!(last.next_cursor, None);
    }
}
