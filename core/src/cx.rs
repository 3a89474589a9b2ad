//! What a handler gets: typed contexts and extractors (axum's idea, kept in-house and
//! sans-I/O). A handler is a plain async function whose arguments say what it needs:
//!
//! ```text
//! pub async fn create<P: Platform>(cx: Member<'_, P>, Json(new): Json<NewItem>) -> Result<Reply, ApiError>
//! ```
//!
//! The router has already resolved the tenant, authenticated and authorized by the time the
//! arguments are extracted, so [`Member`] and [`Public`] carry non-optional values; `Json<T>`
//! has collected every field error into one 400; `cx.db` is the only way to SQL from a tenant
//! handler, and every batch it sends opens with the tenant's `set_config`.

use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;
use http::{request, HeaderMap};

use crate::auth::{Authenticator, Principal};
use crate::authz::Role;
use crate::body::Body;
use crate::config::Config;
use crate::error::{ApiError, Code};
use crate::identity::Identity;
use crate::ids::{UserId, Uuid};
use crate::input::{BodyCx, FromJson, FromQuery, JsonObject, QueryString, NO_BODY_LIMIT};
use crate::ports::Platform;
use crate::reply::IntoReply;
use crate::sql::{AuditCx, Db, PlatformDb};
use crate::tenancy::Tenant;

/// The instance: configuration, ports and the verifier state. Only references, so it is
/// `Copy` and may be moved into work that outlives the request (a streamed body's driver).
pub struct Env<'a, P> {
    pub config: &'a Config,
    pub platform: &'a P,
    pub auth: &'a Authenticator,
    /// Public answers the instance serves again while fresh ([`crate::answers`]).
    pub answers: &'a crate::answers::Answers,
}

impl<P> Clone for Env<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for Env<'_, P> {}

/// Everything the router established about a request, from which arguments are extracted.
pub struct RequestParts<'a, P> {
    pub env: Env<'a, P>,
    pub head: Rc<request::Parts>,
    pub body: Bytes,
    /// Set on tenant routes (always, before the handler runs).
    pub tenant: Option<Rc<Tenant>>,
    /// Set on routes that require a signed-in caller (always, after authorization).
    pub principal: Option<Rc<Principal>>,
    /// Who the caller is to us; set with `principal`.
    pub identity: Option<Rc<Identity>>,
    /// The `{id}` path segment, for routes that have one.
    pub id: Option<String>,
}

impl<P> RequestParts<'_, P> {
    /// The route's tenant; set on every tenant route before extraction.
    pub fn tenant(&self) -> Result<Rc<Tenant>, ApiError> {
        self.tenant.clone().ok_or_else(|| miswired("a tenant"))
    }
}

/// Something a handler argument can be made from.
pub trait Extract<'a, P>: Sized {
    /// The largest request body this argument reads, if it reads the body at all. The route
    /// table takes each route's body limit from its handler's arguments, so adapters can refuse
    /// an oversized body before reading it (see [`crate::Edge::body_limit`]).
    const BODY_LIMIT: Option<usize> = None;

    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError>;
}

/// The route table and the handler disagree (a public route whose handler wants a member):
/// a programming error, answered without panicking.
fn miswired(what: &str) -> ApiError {
    ApiError::new(
        Code::Misconfigured,
        format!("This route does not provide {what} to its handler."),
    )
}

impl<'a, P> Extract<'a, P> for Env<'a, P> {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        Ok(parts.env)
    }
}

/// The request head (method, URI, headers), for the rare handler that reads it directly.
pub struct Head(pub Rc<request::Parts>);

impl<'a, P> Extract<'a, P> for Head {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        Ok(Self(parts.head.clone()))
    }
}

/// A tenant's public endpoint (storefront): tenant from Host, no credentials.
pub struct Public<'a, P> {
    pub env: Env<'a, P>,
    pub tenant: Rc<Tenant>,
    pub db: Db<'a, P>,
    pub head: Rc<request::Parts>,
}

/// A tenant endpoint for an authenticated, authorized user (at least the route's role).
pub struct Member<'a, P> {
    pub env: Env<'a, P>,
    pub tenant: Rc<Tenant>,
    pub principal: Rc<Principal>,
    /// Our id for the caller.
    pub user: UserId,
    /// The role the caller acts with here (at least the route's).
    pub role: Role,
    pub platform_admin: bool,
    pub db: Db<'a, P>,
    pub head: Rc<request::Parts>,
}

/// A tenant endpoint for any signed-in user, member of the tenant or not (accepting an
/// invitation).
pub struct SignedIn<'a, P> {
    pub env: Env<'a, P>,
    pub tenant: Rc<Tenant>,
    pub principal: Rc<Principal>,
    pub user: UserId,
    /// The caller's role here, if they have one.
    pub role: Option<Role>,
    pub db: Db<'a, P>,
    pub head: Rc<request::Parts>,
}

/// A platform-host endpoint for platform admins (the platform API): no tenant; SQL through
/// the platform functions only.
pub struct PlatformAdmin<'a, P> {
    pub env: Env<'a, P>,
    pub principal: Rc<Principal>,
    pub user: UserId,
    pub db: PlatformDb<'a, P>,
    pub head: Rc<request::Parts>,
}

/// A platform-host endpoint for any signed-in user (self-service sign-up).
pub struct Account<'a, P> {
    pub env: Env<'a, P>,
    pub principal: Rc<Principal>,
    pub user: UserId,
    pub db: PlatformDb<'a, P>,
    pub head: Rc<request::Parts>,
}

/// The request's id, as the audit log records it (none until the platform traces requests).
fn request_id<P: Platform>(parts: &RequestParts<'_, P>) -> Option<String> {
    parts
        .env
        .platform
        .trace()
        .map(|t| t.request_id().as_str().to_owned())
}

/// Who the audit log records a signed-in caller's writes as: `platform:<user id>` for a
/// platform admin (on the platform API, and acting as an owner on a tenant), else our user id.
fn actor(identity: &Identity) -> String {
    if identity.platform_admin {
        AuditCx::platform(identity.user.as_str())
    } else {
        identity.user.as_str().to_owned()
    }
}

/// The audit context of a request: its caller, if signed in (storefront handlers name their
/// visitor with [`Db::set_actor`]), and its id.
fn audit_cx<P: Platform>(parts: &RequestParts<'_, P>) -> AuditCx {
    AuditCx {
        actor: parts.identity.as_deref().map(actor),
        request_id: request_id(parts),
    }
}

fn tenant_db<'a, P: Platform>(
    parts: &RequestParts<'a, P>,
) -> Result<(Rc<Tenant>, Db<'a, P>), ApiError> {
    let tenant = parts.tenant()?;
    let db = Db::new(
        parts.env.platform,
        &parts.env.config.origin,
        tenant.id.clone(),
        audit_cx(parts),
    );
    Ok((tenant, db))
}

impl<'a, P: Platform> Extract<'a, P> for Public<'a, P> {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        let (tenant, db) = tenant_db(parts)?;
        Ok(Self {
            env: parts.env,
            tenant,
            db,
            head: parts.head.clone(),
        })
    }
}

/// The signed-in caller, as the router authenticated them.
fn caller<P>(parts: &RequestParts<'_, P>) -> Result<(Rc<Principal>, Rc<Identity>), ApiError> {
    match (&parts.principal, &parts.identity) {
        (Some(p), Some(i)) => Ok((p.clone(), i.clone())),
        _ => Err(miswired("a signed-in caller")),
    }
}

impl<'a, P: Platform> Extract<'a, P> for Member<'a, P> {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        let (tenant, db) = tenant_db(parts)?;
        let (principal, identity) = caller(parts)?;
        let role = identity.role.ok_or_else(|| miswired("a member"))?;
        Ok(Self {
            env: parts.env,
            tenant,
            principal,
            user: identity.user.clone(),
            role,
            platform_admin: identity.platform_admin,
            db,
            head: parts.head.clone(),
        })
    }
}

impl<'a, P: Platform> Extract<'a, P> for SignedIn<'a, P> {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        let (tenant, db) = tenant_db(parts)?;
        let (principal, identity) = caller(parts)?;
        Ok(Self {
            env: parts.env,
            tenant,
            principal,
            user: identity.user.clone(),
            role: identity.role,
            db,
            head: parts.head.clone(),
        })
    }
}

impl<'a, P: Platform> Extract<'a, P> for PlatformAdmin<'a, P> {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        let (principal, identity) = caller(parts)?;
        if !identity.platform_admin {
            return Err(miswired("a platform admin"));
        }
        Ok(Self {
            env: parts.env,
            principal,
            user: identity.user.clone(),
            db: PlatformDb::new(
                parts.env.platform,
                &parts.env.config.origin,
                AuditCx {
                    actor: Some(AuditCx::platform(identity.user.as_str())),
                    request_id: request_id(parts),
                },
            ),
            head: parts.head.clone(),
        })
    }
}

impl<'a, P: Platform> Extract<'a, P> for Account<'a, P> {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        let (principal, identity) = caller(parts)?;
        Ok(Self {
            env: parts.env,
            principal,
            user: identity.user.clone(),
            db: PlatformDb::new(
                parts.env.platform,
                &parts.env.config.origin,
                AuditCx {
                    actor: Some(actor(&identity)),
                    request_id: request_id(parts),
                },
            ),
            head: parts.head.clone(),
        })
    }
}

impl<P> Public<'_, P> {
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }
}

impl<P> Member<'_, P> {
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The caller's user id (ours, not the token's subject), as SQL parameters take it.
    pub fn user(&self) -> &str {
        self.user.as_str()
    }
}

/// A JSON body read into `T`: media type and size checked, every member validated, every
/// problem reported in one 400 `validation_failed` before the handler runs.
pub struct Json<T>(pub T);

impl<'a, P, T: FromJson> Extract<'a, P> for Json<T> {
    const BODY_LIMIT: Option<usize> = Some(T::MAX_BODY);

    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        let mut o = JsonObject::parse(&parts.head.headers, &parts.body, T::MAX_BODY)?;
        T::check(&o)?;
        let cx = BodyCx {
            config: parts.env.config,
            authenticated: parts.principal.is_some(),
        };
        let value = T::from_json(&mut o, &cx);
        o.finish()?;
        // `from_json` returns nothing only after recording why, which `finish` reported.
        value
            .map(Json)
            .ok_or_else(|| ApiError::field("", "invalid_value", "the body is not a valid request"))
    }
}

/// A query string read into `T`; unknown parameters are ignored, bad ones are one 400.
pub struct Query<T>(pub T);

impl<'a, P, T: FromQuery> Extract<'a, P> for Query<T> {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        let mut q = QueryString::parse(&parts.head.uri);
        let cx = BodyCx {
            config: parts.env.config,
            authenticated: parts.principal.is_some(),
        };
        let value = T::from_query(&mut q, &cx);
        q.finish()?;
        Ok(Query(value))
    }
}

/// A path `{id}` as a typed id. Anything that does not parse names nothing here: 404, the same
/// answer as another tenant's id, so ids reveal nothing.
pub struct Path<T>(pub T);

/// An id type a path segment can name.
pub trait FromPath: Sized {
    /// What the id names, for the 404's detail ("catalog item").
    const KIND: &'static str;
    fn from_path(segment: &str) -> Option<Self>;
}

impl<'a, P, T: FromPath> Extract<'a, P> for Path<T> {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        parts
            .id
            .as_deref()
            .and_then(T::from_path)
            .map(Path)
            .ok_or_else(|| ApiError::not_found(T::KIND))
    }
}

impl FromPath for UserId {
    const KIND: &'static str = "member";
    fn from_path(segment: &str) -> Option<Self> {
        Uuid::parse(segment).map(UserId)
    }
}

/// Declares a UUID newtype naming one kind of resource, usable as `Path<Name>`.
#[macro_export]
macro_rules! resource_id {
    ($(#[$m:meta])* $vis:vis $name:ident, $kind:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        $vis struct $name(pub $crate::ids::Uuid);

        impl $crate::cx::FromPath for $name {
            const KIND: &'static str = $kind;
            fn from_path(segment: &str) -> Option<Self> {
                $crate::ids::Uuid::parse(segment).map(Self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

/// The `Idempotency-Key` header, when sent: 1-255 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

impl<'a, P> Extract<'a, P> for IdempotencyKey {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        let Some(v) = parts
            .head
            .headers
            .get(crate::request_headers::IDEMPOTENCY_KEY)
        else {
            return Ok(Self(None));
        };
        match v.to_str() {
            Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
                Ok(Self(Some(k.to_owned())))
            }
            _ => Err(ApiError::field(
                "Idempotency-Key",
                "invalid_value",
                "must be 1-255 visible ASCII characters",
            )),
        }
    }
}

/// The `Idempotency-Key` header where it is required and doubles as a capability (a public
/// checkout replays its answer to whoever presents the key): missing is a 400, and it must be
/// hard to guess, at least 16 characters (a UUID).
pub struct RequiredIdempotencyKey(pub String);

impl<'a, P> Extract<'a, P> for RequiredIdempotencyKey {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        match IdempotencyKey::extract(parts)? {
            IdempotencyKey(Some(key)) if key.len() >= 16 => Ok(Self(key)),
            IdempotencyKey(Some(_)) => Err(ApiError::field(
                "Idempotency-Key",
                "too_short",
                "must be at least 16 characters: use a random UUID per request",
            )),
            IdempotencyKey(None) => Err(ApiError::field(
                "Idempotency-Key",
                "required",
                "is required: retry with the same key to get the same answer, never a second order",
            )),
        }
    }
}

/// `If-Match` on our `"v{version}"` entity tags: `None` when absent or `*`, else the version
/// it names. A tag that can never match (not one of ours) is 412 at once.
pub struct IfMatch(pub Option<i64>);

impl<'a, P> Extract<'a, P> for IfMatch {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        let Some(v) = parts.head.headers.get(http::header::IF_MATCH) else {
            return Ok(Self(None));
        };
        let v = v.to_str().unwrap_or_default().trim();
        if v == "*" {
            return Ok(Self(None));
        }
        v.trim_start_matches("W/")
            .trim_matches('"')
            .strip_prefix('v')
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n > 0 && *n <= i64::from(i32::MAX))
            .map(|n| Self(Some(n)))
            .ok_or_else(|| ApiError::precondition_failed(None))
    }
}

/// A handler: an async function of extractable arguments returning a reply.
pub trait Handler<'a, P, Args> {
    /// The largest request body the handler accepts: its body argument's limit, or
    /// [`NO_BODY_LIMIT`] when no argument reads the body.
    const BODY_LIMIT: usize;

    fn call(
        self,
        parts: RequestParts<'a, P>,
    ) -> impl Future<Output = Result<http::Response<Body<'a>>, ApiError>> + 'a;
}

/// The body limit of a handler whose arguments read the body with these limits: the largest,
/// or [`NO_BODY_LIMIT`] when none reads it.
const fn body_limit(mut args: &[Option<usize>]) -> usize {
    // Evaluated at compile time, once per handler (const fn: no iterators).
    let mut limit = None;
    while let [arg, rest @ ..] = args {
        limit = match (limit, *arg) {
            (Some(m), Some(l)) if m >= l => Some(m),
            (_, Some(l)) => Some(l),
            (m, None) => m,
        };
        args = rest;
    }
    match limit {
        Some(l) => l,
        None => NO_BODY_LIMIT,
    }
}

macro_rules! handler_arity {
    ($($arg:ident),+) => {
        impl<'a, P: 'a, F, Fut, R, $($arg,)+> Handler<'a, P, ($($arg,)+)> for F
        where
            F: FnOnce($($arg),+) -> Fut + 'a,
            Fut: Future<Output = Result<R, ApiError>> + 'a,
            R: IntoReply<'a>,
            $($arg: Extract<'a, P> + 'a,)+
        {
            const BODY_LIMIT: usize = body_limit(&[$($arg::BODY_LIMIT),+]);

            #[allow(non_snake_case)]
            fn call(
                self,
                parts: RequestParts<'a, P>,
            ) -> impl Future<Output = Result<http::Response<Body<'a>>, ApiError>> + 'a {
                async move {
                    // Left to right: the first argument that cannot be extracted answers.
                    $(let $arg = $arg::extract(&parts)?;)+
                    drop(parts);
                    self($($arg),+).await?.into_reply()
                }
            }
        }
    };
}

handler_arity!(A);
handler_arity!(A, B);
handler_arity!(A, B, C);
handler_arity!(A, B, C, D);
