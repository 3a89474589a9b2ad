//! The tenant team's view of orders: list (newest first, on the shared pager, filtered by
//! status, customer email and a created range), read, move through the status machine
//! (`PATCH` with `If-Match`; cancelling gives stock back), and the reports a dashboard shows:
//! orders and revenue per status and per day, and visits → orders → revenue per UTM source
//! and campaign. Members read; admins write.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Map;

use super::{Order, OrderId, OrderStatus};
use crate::cx::{FromPath as _, IfMatch, Json, Member, Path, Query};
use crate::error::{ApiError, Code};
use crate::input::{BodyCx, FromJson, FromQuery, JsonObject, QueryString};
use crate::page::{PageRequest, Select, Sort};
use crate::ports::Platform;
use crate::reply::{Cache, Reply};
use crate::sql::{Params, Statement};

/// Reports cover the last 30 days unless asked otherwise, and at most 366 days.
const DEFAULT_RANGE: Duration = Duration::from_secs(30 * 24 * 3600);
const MAX_RANGE: Duration = Duration::from_secs(366 * 24 * 3600);

const SORTS: &[Sort] = &[Sort {
    name: "-created_at",
    column: "o.created_at",
    key: "public.iso_utc(o.created_at)",
    cast: "timestamptz",
    descending: true,
}];

/// Full precision: a bound cut to the second would drop what happened in its last second.
fn rfc3339(t: SystemTime) -> String {
    crate::rfc3339::micros(t)
}

/// How far an open range's end reaches past the edge's "now": the database stamps rows with
/// its own clock, which may run a little ahead of the edge's.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// `GET /v1/orders?status=&email=&from=&to=&limit=&cursor=`.
pub struct OrderListing {
    page: PageRequest,
    status: Option<String>,
    email: Option<String>,
    from: Option<SystemTime>,
    to: Option<SystemTime>,
}

impl FromQuery for OrderListing {
    fn from_query(q: &mut QueryString, _: &BodyCx<'_>) -> Self {
        let page = PageRequest::read(q, SORTS, 20);
        let status = q.one_of("status", OrderStatus::NAMES);
        let email = q.string("email", 254).map(|e| e.to_ascii_lowercase());
        let from = q.time("from");
        let to = q.time("to");
        Self {
            page,
            status,
            email,
            from,
            to,
        }
    }
}

/// A report's range: `from` (inclusive) and `to` (exclusive), as asked; an open end is
/// resolved by the handler, which knows "now" (the last 30 days by default).
pub struct Range {
    from: Option<SystemTime>,
    to: Option<SystemTime>,
}

impl FromQuery for Range {
    fn from_query(q: &mut QueryString, _: &BodyCx<'_>) -> Self {
        let from = q.time("from");
        let to = q.time("to");
        if let (Some(f), Some(t)) = (from, to) {
            if f >= t {
                q.error("from", "out_of_range", "must be before `to`");
            }
        }
        Self { from, to }
    }
}

impl Range {
    /// The range with open ends resolved against `now`, or a 400 if it is too long.
    /// An open start is never before 1970 (no order is).
    fn resolve(&self, now: SystemTime) -> Result<(SystemTime, SystemTime), ApiError> {
        let end = self.to.unwrap_or(now);
        let to = match self.to {
            Some(t) => Some(t),
            None => now.checked_add(CLOCK_SKEW),
        };
        let from = self.from.unwrap_or_else(|| {
            end.checked_sub(DEFAULT_RANGE)
                .map_or(UNIX_EPOCH, |f| f.max(UNIX_EPOCH))
        });
        let too_long = MAX_RANGE + CLOCK_SKEW;
        match to {
            Some(to)
                if to
                    .duration_since(from)
                    .is_ok_and(|span| !span.is_zero() && span <= too_long) =>
            {
                Ok((from, to))
            }
            _ => Err(ApiError::field(
                "from",
                "out_of_range",
                "the range must be positive and at most 366 days",
            )),
        }
    }
}

/// `GET /v1/orders`.
pub async fn list<P: Platform>(
    cx: Member<'_, P>,
    Query(listing): Query<OrderListing>,
) -> Result<Reply, ApiError> {
    let mut params = Params::new();
    let mut filters = Vec::new();
    if let Some(s) = &listing.status {
        filters.push(format!("o.status = {}", params.bind(s)));
    }
    if let Some(e) = &listing.email {
        filters.push(format!("o.customer_email = {}", params.bind(e)));
    }
    if let Some(t) = listing.from {
        filters.push(format!(
            "o.created_at >= {}::timestamptz",
            params.bind(rfc3339(t))
        ));
    }
    if let Some(t) = listing.to {
        filters.push(format!(
            "o.created_at < {}::timestamptz",
            params.bind(rfc3339(t))
        ));
    }
    let stmt = listing.page.statement(
        Select {
            doc: "public.order_json(o)",
            from: "public.orders o",
            id: "o.id",
            filters,
        },
        params,
    );
    let page = listing.page.page::<Order>(&cx.db.one(stmt).await?)?;
    Ok(Reply::ok(&page).cache(Cache::Private))
}

/// `GET /v1/orders/{id}`.
pub async fn get<P: Platform>(
    cx: Member<'_, P>,
    Path(id): Path<OrderId>,
) -> Result<Reply, ApiError> {
    let order: Order = cx
        .db
        .find(Statement::new(
            "SELECT public.order_json(o) FROM public.orders o WHERE o.id = $1::uuid",
            vec![Some(id.to_string())],
        ))
        .await?
        .ok_or_else(|| ApiError::not_found(OrderId::KIND))?;
    Ok(Reply::ok(&order)
        .etag(&order.etag())
        .cache(Cache::Revalidate))
}

/// `PATCH /v1/orders/{id}`'s body.
pub struct StatusChange {
    status: String,
}

impl FromJson for StatusChange {
    fn from_json(o: &mut JsonObject, _: &BodyCx<'_>) -> Option<Self> {
        Some(Self {
            status: o.one_of("status", true, OrderStatus::NAMES)?,
        })
    }
}

/// What `order_transition` decided.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum OrderTransition {
    Updated {
        order: Box<Order>,
    },
    NotFound,
    PreconditionFailed {
        version: i64,
    },
    InvalidTransition {
        from: OrderStatus,
        allowed: Vec<OrderStatus>,
    },
}

impl crate::outcome::Outcome for OrderTransition {}

/// `PATCH /v1/orders/{id}` `{status}`: pending → confirmed → shipped → delivered; cancelled
/// from pending or confirmed (stock goes back).
pub async fn update<P: Platform>(
    cx: Member<'_, P>,
    Json(change): Json<StatusChange>,
    IfMatch(version): IfMatch,
    Path(id): Path<OrderId>,
) -> Result<Reply, ApiError> {
    let outcome: OrderTransition = cx
        .db
        .outcome(Statement::new(
            "SELECT public.order_transition($1::uuid, $2::int, $3)",
            vec![
                Some(id.to_string()),
                version.map(|v| v.to_string()),
                Some(change.status.clone()),
            ],
        ))
        .await?;
    match outcome {
        OrderTransition::Updated { order } => Ok(Reply::ok(&order)
            .etag(&order.etag())
            .cache(Cache::Revalidate)),
        OrderTransition::NotFound => Err(ApiError::not_found(OrderId::KIND)),
        OrderTransition::PreconditionFailed { version } => Err(ApiError::precondition_failed(
            Some(format!("\"v{version}\"")),
        )),
        OrderTransition::InvalidTransition { from, allowed } => {
            let mut m = Map::new();
            m.insert("from".into(), serde_json::json!(from));
            m.insert("allowed".into(), serde_json::json!(allowed));
            let allowed_text = if allowed.is_empty() {
                "none: it is final".to_owned()
            } else {
                serde_json::to_string(&allowed).unwrap_or_default()
            };
            Err(ApiError::new(
                Code::InvalidTransition,
                format!(
                    "An order that is {} cannot become {}; allowed: {allowed_text}.",
                    serde_json::to_string(&from).unwrap_or_default(),
                    change.status
                ),
            )
            .with_members(m))
        }
    }
}

/// Count and money of a group of orders.
#[derive(Debug, Serialize, Deserialize)]
pub struct Tally {
    pub count: i64,
    #[serde(alias = "amount")]
    pub revenue: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DayTally {
    pub day: String,
    pub count: i64,
    pub revenue: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OrderTotals {
    pub by_status: BTreeMap<String, Tally>,
    pub by_day: Vec<DayTally>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Donations {
    pub count: i64,
    pub amount: String,
}

/// `public.orders_summary`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Summary {
    pub from: String,
    pub to: String,
    pub orders: OrderTotals,
    pub donations: Donations,
}

/// One (utm_source, utm_campaign) row of `public.visits_attribution`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Attributed {
    pub utm_source: Option<String>,
    pub utm_campaign: Option<String>,
    pub visits: i64,
    pub orders: i64,
    pub revenue: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Attribution {
    pub from: String,
    pub to: String,
    pub rows: Vec<Attributed>,
}

fn now<P: Platform>(cx: &Member<'_, P>) -> SystemTime {
    cx.env.platform.now()
}

/// A report over `range`: `function` (one of ours, never client text) is a SQL function of
/// (from, to) returning the report's document.
async fn report<P: Platform, T: DeserializeOwned + Serialize>(
    cx: &Member<'_, P>,
    range: &Range,
    function: &'static str,
) -> Result<Reply, ApiError> {
    let (from, to) = range.resolve(now(cx))?;
    let report: T = cx
        .db
        .call(Statement::new(
            format!("SELECT public.{function}($1::timestamptz, $2::timestamptz)"),
            vec![Some(rfc3339(from)), Some(rfc3339(to))],
        ))
        .await?;
    Ok(Reply::ok(&report).cache(Cache::Private))
}

/// `GET /v1/orders/summary?from=&to=`.
pub async fn summary<P: Platform>(
    cx: Member<'_, P>,
    Query(range): Query<Range>,
) -> Result<Reply, ApiError> {
    report::<P, Summary>(&cx, &range, "orders_summary").await
}

/// `GET /v1/analytics/visits?from=&to=`.
pub async fn attribution<P: Platform>(
    cx: Member<'_, P>,
    Query(range): Query<Range>,
) -> Result<Reply, ApiError> {
    report::<P, Attribution>(&cx, &range, "visits_attribution").await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(query: &str) -> Result<Range, ApiError> {
        let mut q = QueryString::parse(&format!("/x?{query}").parse().unwrap());
        let m = crate::config::tests::dev_settings();
        let config = crate::Config::load(&|k: &str| m.get(k).cloned()).unwrap();
        let cx = BodyCx {
            config: &config,
            authenticated: true,
        };
        let r = Range::from_query(&mut q, &cx);
        q.finish().map(|()| r)
    }

    fn at(s: &str) -> SystemTime {
        crate::rfc3339::parse(s).unwrap()
    }

    #[test]
    fn open_ranges_end_now_and_reach_back_thirty_days() {
        let now = at("2026-12-02T15:35:12.456789Z");
        let (from, to) = range("").unwrap().resolve(now).unwrap();
        assert!(to > now, "what the database stamped just now is inside");
        assert_eq!(from, at("2026-11-02T15:35:12.456789Z"));
        // Bounds keep their fraction: an order at .4 s is not cut off by a bound at .0 s.
        assert_eq!(rfc3339(now), "2026-12-02T15:35:12.456789Z");
        let (from, to) = range("to=2001-01-02T00:00:00Z")
            .unwrap()
            .resolve(now)
            .unwrap();
        assert_eq!(
            (from, to),
            (at("2000-12-03T00:00:00Z"), at("2001-01-02T00:00:00Z"))
        );
    }

    #[test]
    fn bad_and_extreme_ranges_are_refused_without_panicking() {
        let now = at("2026-12-02T00:00:00Z");
        assert!(range("from=yesterday").is_err());
        assert!(range("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z").is_err());
        assert!(range("from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z")
            .unwrap()
            .resolve(now)
            .is_err());
        assert!(range("to=0000-01-01T00:00:00Z").is_err());
        assert!(range("from=99999-01-01T00:00:00Z").is_err());
        assert!(range("to=1969-12-31T00:00:00Z").is_err());
        assert!(range("from=9999-12-31T23:59:59%2B00:00").is_ok());
        assert!(
            range("from=9999-12-31T23:59:59-01:00").is_err(),
            "year 10000 in UTC"
        );
        // An open start reaches back no further than 1970.
        let (from, _) = range("to=1970-01-05T00:00:00Z")
            .unwrap()
            .resolve(now)
            .unwrap();
        assert_eq!(from, at("1970-01-01T00:00:00Z"));
        assert!(range("to=1970-01-01T00:00:00Z")
            .unwrap()
            .resolve(now)
            .is_err());
    }
}
