//! The audit log's reading side: `GET /v1/audit` (admins and owners). Rows are written in SQL,
//! by every write's own function in its own transaction (`public.audit_record`,
//! `migrations/functions/05_audit.sql`), with the actor and request id the batch's prelude set
//! (`sql::AuditCx`); the app role may insert and read them, never change or delete them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cx::{Member, Query};
use crate::error::ApiError;
use crate::ids::Uuid;
use crate::input::{BodyCx, FromQuery, QueryString};
use crate::page::{PageRequest, Select, Sort};
use crate::ports::Platform;
use crate::reply::{Cache, Reply};
use crate::sql::{Params, Statement};

const SORTS: &[Sort] = &[Sort {
    name: "-at",
    column: "a.at",
    key: "public.iso_utc(a.at)",
    cast: "timestamptz",
    descending: true,
}];

/// One audit row as the API shows it (`public.audit_json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: Uuid,
    pub at: String,
    /// Our user id, `visitor:<id>`, `platform:<user id>`, or null (the system).
    pub actor: Option<String>,
    pub action: String,
    pub target: Target,
    /// The fields that changed; masked ones read `"***"` on both sides.
    pub changes: BTreeMap<String, Change>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// A field's values before and after the write (JSON null where it did not exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub before: Value,
    pub after: Value,
}

/// `GET /v1/audit?actor=&action=&target_type=&target_id=&since=&until=&limit=&cursor=`.
#[derive(Debug)]
pub struct AuditListing {
    page: PageRequest,
    actor: Option<String>,
    action: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
}

/// `[a-z_]+`, at most `max` bytes.
fn is_word(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// An actor as the log records it: a user id, `visitor:<id>` or `platform:<user id>`.
fn is_actor(s: &str) -> bool {
    let id = s
        .strip_prefix("visitor:")
        .or_else(|| s.strip_prefix("platform:"))
        .unwrap_or(s);
    Uuid::parse(id).is_some()
}

/// `catalog.update`: two words joined by a dot.
fn is_action(s: &str) -> bool {
    s.len() <= 64 && matches!(s.split_once('.'), Some((a, b)) if is_word(a, 32) && is_word(b, 32))
}

fn read_filter(
    q: &mut QueryString,
    name: &str,
    max: usize,
    valid: fn(&str) -> bool,
    what: &str,
) -> Option<String> {
    let raw = q.string(name, max)?;
    if valid(&raw) {
        Some(raw)
    } else {
        q.error(name, "invalid_value", format!("must be {what}"));
        None
    }
}

impl FromQuery for AuditListing {
    fn from_query(q: &mut QueryString, _: &BodyCx<'_>) -> Self {
        let page = PageRequest::read(q, SORTS, 50);
        let actor = read_filter(
            q,
            "actor",
            100,
            is_actor,
            "a user id, visitor:<id> or platform:<user id>",
        );
        let action = read_filter(
            q,
            "action",
            64,
            is_action,
            "an action such as catalog.update",
        );
        let target_type = read_filter(
            q,
            "target_type",
            32,
            |s| is_word(s, 32),
            "a target type such as catalog_item",
        );
        let target_id = read_filter(
            q,
            "target_id",
            300,
            |s| !s.chars().any(char::is_control),
            "a target id",
        );
        let since = q.time("since");
        let until = q.time("until");
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                q.error("since", "out_of_range", "must be before `until`");
            }
        }
        Self {
            page,
            actor,
            action,
            target_type,
            target_id,
            since,
            until,
        }
    }
}

impl AuditListing {
    /// The page's statement: the tenant's rows (row-level security confines them) matching
    /// every filter, newest first.
    fn statement(&self) -> Statement {
        let mut params = Params::new();
        let mut filters = Vec::new();
        for (column, value) in [
            ("a.actor", &self.actor),
            ("a.action", &self.action),
            ("a.target_type", &self.target_type),
            ("a.target_id", &self.target_id),
        ] {
            if let Some(v) = value {
                filters.push(format!("{column} = {}", params.bind(v.clone())));
            }
        }
        let micros = crate::rfc3339::micros;
        if let Some(t) = self.since {
            filters.push(format!("a.at >= {}::timestamptz", params.bind(micros(t))));
        }
        if let Some(t) = self.until {
            filters.push(format!("a.at < {}::timestamptz", params.bind(micros(t))));
        }
        self.page.statement(
            Select {
                doc: "public.audit_json(a)",
                from: "public.audit_log a",
                id: "a.id",
                filters,
            },
            params,
        )
    }
}

/// `GET /v1/audit`: the tenant's audit log, newest first (cursor; filters `actor`, `action`,
/// `target_type`, `target_id`, `since` inclusive, `until` exclusive).
pub async fn list<P: Platform>(
    cx: Member<'_, P>,
    Query(listing): Query<AuditListing>,
) -> Result<Reply, ApiError> {
    let result = cx.db.one(listing.statement()).await?;
    let page = listing.page.page::<AuditEntry>(&result)?;
    Ok(Reply::ok(&page).cache(Cache::Private))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{tests::dev_settings, Config};

    const USER: &str = "00000000-0000-4000-8000-000000000001";

    fn listing(uri: &str) -> Result<AuditListing, ApiError> {
        let m = dev_settings();
        let config = Config::load(&|k: &str| m.get(k).cloned()).unwrap();
        let cx = BodyCx {
            config: &config,
            authenticated: true,
        };
        let mut q = QueryString::parse(&uri.parse().unwrap());
        let l = AuditListing::from_query(&mut q, &cx);
        q.finish().map(|()| l)
    }

    fn fields(e: ApiError) -> Vec<String> {
        e.field_errors().iter().map(|f| f.field.clone()).collect()
    }

    #[test]
    fn filters_bind_their_values_and_never_splice_them() {
        let l = listing(&format!(
            "/v1/audit?actor=visitor:{USER}&action=catalog.update&target_type=catalog_item\
             &target_id=x'y&since=2026-01-01T00:00:00Z&until=2026-02-01T00:00:00%2B01:00"
        ))
        .unwrap();
        let s = l.statement();
        assert!(s.query.contains("a.actor = $1"), "{}", s.query);
        assert!(s.query.contains("a.action = $2"));
        assert!(s.query.contains("a.target_type = $3"));
        assert!(s.query.contains("a.target_id = $4"));
        assert!(s.query.contains("a.at >= $5::timestamptz"));
        assert!(s.query.contains("a.at < $6::timestamptz"));
        assert!(s.query.contains("ORDER BY a.at DESC, a.id DESC"));
        assert!(!s.query.contains("x'y"));
        assert_eq!(
            s.params[0].as_deref(),
            Some(format!("visitor:{USER}").as_str())
        );
        assert_eq!(s.params[5].as_deref(), Some("2026-01-31T23:00:00.000000Z"));
        // The pager's limit (default 50, one more to tell whether more follow).
        assert_eq!(s.params.last().unwrap().as_deref(), Some("51"));
    }

    #[test]
    fn every_actor_form_is_accepted() {
        for a in [
            USER.to_owned(),
            format!("visitor:{USER}"),
            format!("platform:{USER}"),
        ] {
            assert!(listing(&format!("/v1/audit?actor={a}")).is_ok(), "{a}");
        }
    }

    #[test]
    fn bad_filters_are_one_400_naming_each() {
        let e = listing(
            "/v1/audit?actor=root&action=DROP%20TABLE&target_type=Catalog&since=yesterday\
             &until=2026-13-01T00:00:00Z&limit=0&cursor=nope",
        )
        .unwrap_err();
        let mut f = fields(e);
        f.sort();
        assert_eq!(
            f,
            [
                "action",
                "actor",
                "cursor",
                "limit",
                "since",
                "target_type",
                "until"
            ]
        );
        let e =
            listing("/v1/audit?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z").unwrap_err();
        assert_eq!(fields(e), ["since"]);
        let e = listing("/v1/audit?action=catalog").unwrap_err();
        assert_eq!(fields(e), ["action"]);
    }

    #[test]
    fn rows_read_into_entries() {
        let e: AuditEntry = serde_json::from_value(serde_json::json!({
            "id": USER, "at": "2026-01-01T00:00:00.000000Z", "actor": null,
            "action": "catalog.update", "target": {"type": "catalog_item", "id": "x"},
            "changes": {"price": {"before": "1.000", "after": "2.000"},
                        "email": {"before": "***", "after": "***"}},
            "request_id": null,
        }))
        .unwrap();
        assert_eq!(e.target.kind, "catalog_item");
        assert_eq!(e.changes["email"].after, "***");
        assert_eq!(
            serde_json::to_value(&e).unwrap()["target"]["type"],
            "catalog_item"
        );
    }
}
