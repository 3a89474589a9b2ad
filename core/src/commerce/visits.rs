//! `POST /v1/storefront/visits`: a visitor's page view with its referrer and UTM parameters,
//! which checkout may later reference (`visit_id`) so orders are attributed to the campaign
//! that brought them. Cheap (one statement) and rate-limited per visitor in the database, under
//! a per-visitor lock, so parallel requests cannot overshoot.

use http::header;
use serde::{Deserialize, Serialize};

use crate::cx::{Json, Public};
use crate::error::{ApiError, Code};
use crate::ids::Uuid;
use crate::input::{BodyCx, FromJson, JsonObject};
use crate::ports::Platform;
use crate::reply::{Cache, Reply};
use crate::sql::Statement;
use crate::visitor::Visitor;

/// Visits one visitor may record per hour unless `settings.limits` says otherwise.
pub const DEFAULT_PER_HOUR: i64 = 60;
const UTM: &[&str] = &[
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

/// The body: where the visitor landed and what brought them.
#[derive(Debug, Serialize)]
pub struct NewVisit {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    referrer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    utm_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    utm_medium: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    utm_campaign: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    utm_term: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    utm_content: Option<String>,
}

impl FromJson for NewVisit {
    const MAX_BODY: usize = 8 * 1024;

    fn from_json(o: &mut JsonObject, _: &BodyCx<'_>) -> Option<Self> {
        let path = o.string("path", true, 2048);
        if path.as_deref().is_some_and(|p| !p.starts_with('/')) {
            o.error("path", "invalid_value", "must be a path starting with /");
        }
        let referrer = o.string("referrer", false, 2048);
        let mut utm = UTM.iter().map(|k| o.string(k, false, 200));
        let (utm_source, utm_medium, utm_campaign, utm_term, utm_content) = (
            utm.next().flatten(),
            utm.next().flatten(),
            utm.next().flatten(),
            utm.next().flatten(),
            utm.next().flatten(),
        );
        Some(Self {
            path: path.filter(|p| p.starts_with('/'))?,
            referrer,
            utm_source,
            utm_medium,
            utm_campaign,
            utm_term,
            utm_content,
        })
    }
}

/// What `visit_record` decided.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum VisitRecord {
    Recorded { visit: Recorded },
    RateLimited { retry_after: u64 },
}

impl crate::outcome::Outcome for VisitRecord {}

#[derive(Serialize, Deserialize)]
struct Recorded {
    id: Uuid,
    created_at: String,
}

/// `POST /v1/storefront/visits` → 201 `{id, created_at}`.
pub async fn record<P: Platform>(
    cx: Public<'_, P>,
    visitor: Visitor,
    Json(visit): Json<NewVisit>,
) -> Result<Reply, ApiError> {
    let per_hour = cx
        .tenant
        .settings
        .limits
        .visits_per_visitor_per_hour
        .unwrap_or(DEFAULT_PER_HOUR)
        .clamp(0, i64::from(i32::MAX));
    let id = Uuid::random(cx.env.platform)?;
    let doc = serde_json::to_string(&visit)
        .map_err(|e| ApiError::upstream(format!("cannot encode the visit: {e}")))?;
    let outcome: VisitRecord = cx
        .db
        .outcome(Statement::new(
            "SELECT public.visit_record($1::uuid, $2, $3::jsonb, $4::int)",
            vec![
                Some(id.to_string()),
                Some(visitor.id.clone()),
                Some(doc),
                Some(per_hour.to_string()),
            ],
        ))
        .await?;
    let reply = match outcome {
        VisitRecord::Recorded { visit } => {
            // No Location: a visit is write-only for visitors.
            Reply::json(http::StatusCode::CREATED, &visit).cache(Cache::NoStore)
        }
        VisitRecord::RateLimited { retry_after } => {
            return Err(ApiError::too_many(
                Code::RateLimited,
                format!("This visitor may record {per_hour} visits per hour."),
                Some(retry_after.max(1)),
            ))
        }
    };
    Ok(match visitor.set_cookie {
        Some(cookie) => reply.header(header::SET_COOKIE, cookie.to_str().unwrap_or_default()),
        None => reply,
    })
}
