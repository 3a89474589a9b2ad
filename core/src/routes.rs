//! The route table: one line per endpoint naming method, path, who may call it and the
//! handler (axum/matchit style). The router resolves the tenant, answers CORS, authenticates and
//! authorizes *before* a handler runs, so handlers receive typed contexts (`cx::Member`,
//! `cx::Public`) with nothing left to re-check.

use std::rc::Rc;

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use http::{header, request, HeaderValue, Method, Request, Response};

use crate::auth::Principal;
use crate::authz::{self, Role};
use crate::body::Body;
use crate::code::Code;
use crate::commerce::{checkout, orders, visits};
use crate::cx::{Env, Handler, RequestParts};
use crate::error::ApiError;
use crate::identity::{self, Identity};
use crate::input::NO_BODY_LIMIT;
use crate::ports::Platform;
use crate::{
    catalog, chat, cors, health, me, platform, ratelimit, settings, storefront, team, tenancy,
    uploads,
};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Operational endpoints on every host: no tenant, no credentials.
    Open,
    /// A tenant's public endpoint (storefront): tenant from Host, no credentials.
    Public,
    /// A tenant's endpoint for its members with at least this role.
    Role(Role),
    /// A tenant's endpoint for any signed-in user, member or not (accepting an invitation).
    SignedIn,
    /// The platform API: the platform host only, platform-admin tokens only.
    PlatformAdmin,
    /// The platform host, any signed-in user (self-service sign-up).
    Account,
}

impl Access {
    /// Served on the platform host (and only there).
    fn on_platform_host(self) -> bool {
        matches!(self, Self::PlatformAdmin | Self::Account)
    }
}

const OPEN: Access = Access::Open;
const PUBLIC: Access = Access::Public;
const MEMBER: Access = Access::Role(Role::Member);
const ADMIN: Access = Access::Role(Role::Admin);
const OWNER: Access = Access::Role(Role::Owner);
const SIGNED_IN: Access = Access::SignedIn;
const PLATFORM_ADMIN: Access = Access::PlatformAdmin;
const ACCOUNT: Access = Access::Account;

/// A handler with its arguments extracted, boxed so that one table holds them all.
pub type BoxedHandler<P> =
    for<'a> fn(RequestParts<'a, P>) -> LocalBoxFuture<'a, Result<Response<Body<'a>>, ApiError>>;

pub struct Route<P> {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: BoxedHandler<P>,
    /// The largest request body the route accepts, from its handler's body argument
    /// (`Json<T>`: `T::MAX_BODY`; no body argument: [`NO_BODY_LIMIT`]).
    pub body_limit: usize,
}

/// `routes! { METHOD "path" ACCESS => module::handler, … }` builds the table. Each handler is
/// a generic `async fn` over the platform; its arguments are extractors.
macro_rules! routes {
    ($($method:ident $path:literal $access:ident => $($seg:ident)::+,)*) => {
        /// Every endpoint, in one table.
        pub fn table<P: Platform>() -> Vec<Route<P>> {
            vec![$(
                Route {
                    method: Method::$method,
                    path: $path,
                    access: $access,
                    handler: {
                        fn call<'a, P: Platform>(
                            parts: RequestParts<'a, P>,
                        ) -> LocalBoxFuture<'a, Result<Response<Body<'a>>, ApiError>> {
                            Box::pin(Handler::call($($seg)::+::<P>, parts))
                        }
                        call::<P>
                    },
                    body_limit: {
                        fn limit<'a, P: Platform + 'a, A, H: Handler<'a, P, A>>(_: &H) -> usize {
                            H::BODY_LIMIT
                        }
                        limit(&$($seg)::+::<P>)
                    },
                },
            )*]
        }
    };
}

routes! {
    GET    "/healthz"                                          OPEN     => health::get,
    GET    "/v1/me"                                            MEMBER   => me::get,
    GET    "/v1/catalog"                                       MEMBER   => catalog::list,
    POST   "/v1/catalog"                                       ADMIN    => catalog::create,
    GET    "/v1/catalog/{id}"                                  MEMBER   => catalog::get,
    PATCH  "/v1/catalog/{id}"                                  ADMIN    => catalog::update,
    DELETE "/v1/catalog/{id}"                                  ADMIN    => catalog::archive,
    GET    "/v1/storefront"                                    PUBLIC   => storefront::profile,
    GET    "/v1/storefront/catalog"                            PUBLIC   => storefront::list,
    GET    "/v1/storefront/catalog/{id}"                       PUBLIC   => storefront::get,
    POST   "/v1/chat"                                          MEMBER   => chat::post_member,
    GET    "/v1/chat/conversations"                            MEMBER   => chat::conversations,
    GET    "/v1/chat/conversations/{id}/messages"              MEMBER   => chat::messages_member,
    POST   "/v1/storefront/chat"                               PUBLIC   => chat::post_visitor,
    GET    "/v1/storefront/chat/conversations/{id}/messages"   PUBLIC   => chat::messages_visitor,
    POST   "/v1/uploads"                                       MEMBER   => uploads::create,
    POST   "/v1/uploads/{id}/complete"                         MEMBER   => uploads::complete,
    GET    "/v1/files"                                         MEMBER   => uploads::list,
    GET    "/v1/files/{id}"                                    MEMBER   => uploads::get,
    DELETE "/v1/files/{id}"                                    MEMBER   => uploads::delete,
    POST   "/v1/storefront/visits"                             PUBLIC   => visits::record,
    POST   "/v1/storefront/checkout"                           PUBLIC   => checkout::checkout,
    GET    "/v1/storefront/orders/{id}"                        PUBLIC   => checkout::get,
    GET    "/v1/orders"                                        MEMBER   => orders::list,
    GET    "/v1/orders/summary"                                MEMBER   => orders::summary,
    GET    "/v1/orders/{id}"                                   MEMBER   => orders::get,
    PATCH  "/v1/orders/{id}"                                   ADMIN    => orders::update,
    GET    "/v1/analytics/visits"                              MEMBER   => orders::attribution,
    GET    "/v1/members"                                       MEMBER   => team::list,
    GET    "/v1/members/invitations"                           ADMIN    => team::invitations,
    POST   "/v1/members/invitations"                           ADMIN    => team::invite,
    DELETE "/v1/members/invitations/{id}"                      ADMIN    => team::revoke,
    PATCH  "/v1/members/{id}"                                  ADMIN    => team::update,
    DELETE "/v1/members/{id}"                                  MEMBER   => team::remove,
    POST   "/v1/invitations/{id}/accept"                       SIGNED_IN => team::accept,
    GET    "/v1/tenant"                                        MEMBER   => settings::get,
    PATCH  "/v1/tenant"                                        OWNER    => settings::update,
    GET    "/v1/tenant/domains"                                MEMBER   => settings::domains,
    POST   "/v1/tenant/domains"                                OWNER    => settings::add_domain,
    POST   "/v1/tenant/domains/{id}/verify"                    OWNER    => settings::verify_domain,
    DELETE "/v1/tenant/domains/{id}"                           OWNER    => settings::remove_domain,
    GET    "/v1/usage"                                         MEMBER   => settings::usage,
    GET    "/v1/audit"                                         ADMIN    => crate::audit::list,
    POST   "/v1/platform/tenants"                              PLATFORM_ADMIN => platform::create,
    GET    "/v1/platform/tenants"                              PLATFORM_ADMIN => platform::list,
    GET    "/v1/platform/tenants/{id}"                         PLATFORM_ADMIN => platform::get,
    PATCH  "/v1/platform/tenants/{id}"                         PLATFORM_ADMIN => platform::update,
    DELETE "/v1/platform/tenants/{id}"                         PLATFORM_ADMIN => platform::delete,
    POST   "/v1/platform/purge"                                PLATFORM_ADMIN => platform::purge,
    POST   "/v1/signup"                                        ACCOUNT  => platform::signup,
}

/// Path matcher and table, built once per instance.
pub struct Router<P> {
    routes: Vec<Route<P>>,
    paths: matchit::Router<Vec<usize>>,
}

impl<P: Platform> Default for Router<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Platform> Router<P> {
    pub fn new() -> Self {
        let routes = table::<P>();
        let mut grouped: Vec<(&'static str, Vec<usize>)> = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            match grouped.iter_mut().find(|(p, _)| *p == r.path) {
                Some((_, v)) => v.push(i),
                None => grouped.push((r.path, vec![i])),
            }
        }
        let mut paths = matchit::Router::new();
        for (path, idx) in grouped {
            // The table is static; `every_route_is_reachable` proves each insert succeeds.
            let _ = paths.insert(path, idx);
        }
        Self { routes, paths }
    }

    /// The largest body a request for `method` and `path` may send: its route's limit, and
    /// [`NO_BODY_LIMIT`] (the smallest) when no route matches (HEAD is GET's; preflights and
    /// unknown methods send no body).
    pub fn body_limit(&self, method: &Method, path: &str) -> usize {
        let indices = self.paths.at(path).map_or(&[][..], |m| m.value.as_slice());
        self.route_for(indices, method)
            .map_or(NO_BODY_LIMIT, |r| r.body_limit)
    }

    /// The routes of a path (its `indices` in the table).
    fn candidates<'r>(
        &'r self,
        indices: &'r [usize],
    ) -> impl Iterator<Item = &'r Route<P>> + use<'r, P> {
        indices.iter().filter_map(move |i| self.routes.get(*i))
    }

    /// Which of a path's routes serves `method`: HEAD is GET's.
    fn route_for<'r>(&'r self, indices: &'r [usize], method: &Method) -> Option<&'r Route<P>> {
        let wanted = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.candidates(indices).find(|r| r.method == *wanted)
    }

    /// Answers one request; every refusal is a problem document naming the request's path.
    /// The route is looked up once: its body limit, its access rules and its handler all come
    /// from that one match.
    pub async fn dispatch<'a>(&self, env: Env<'a, P>, req: Request<Bytes>) -> Response<Body<'a>> {
        let (head, body) = req.into_parts();
        let head = Rc::new(head);
        match self.route(env, &head, body).await {
            Ok(resp) => resp,
            Err(err) => err
                .into_traced_response(head.uri.path(), env.platform.trace())
                .map(Body::Full),
        }
    }

    async fn route<'a>(
        &self,
        env: Env<'a, P>,
        head: &Rc<request::Parts>,
        body: Bytes,
    ) -> Result<Response<Body<'a>>, ApiError> {
        let matched = self.paths.at(head.uri.path());
        let indices = matched.as_ref().map_or(&[][..], |m| m.value.as_slice());
        let candidates = || self.candidates(indices);
        // HEAD is GET without a body, for every GET route.
        let is_head = head.method == Method::HEAD;
        let is_options = head.method == Method::OPTIONS;
        let route = self.route_for(indices, &head.method);
        // The same limit whether or not the adapter read the body through `Edge::serve_body`
        // (see `body_limit`); before the path's existence, as there.
        let limit = route.map_or(NO_BODY_LIMIT, |r| r.body_limit);
        if body.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        let matched = matched.map_err(|_| ApiError::no_route())?;
        let id = matched.params.get("id").map(str::to_owned);
        // The methods the path has, for a 405 or a preflight: built only for those.
        let allow = || {
            let mut allow: Vec<Method> = candidates().map(|r| r.method.clone()).collect();
            if allow.contains(&Method::GET) {
                allow.push(Method::HEAD);
            }
            allow
        };
        if let Some(r) = route {
            crate::ports::note(env.platform, |t| t.note_route(r.path));
        }
        let access = match (route, is_options) {
            (Some(r), _) => r.access,
            // Preflights are answered for the path's tenant routes, before any credentials.
            (None, true) => candidates()
                .map(|r| r.access)
                .find(|a| *a != Access::Open && !a.on_platform_host())
                .ok_or_else(|| ApiError::method_not_allowed(allow()))?,
            (None, false) => return Err(ApiError::method_not_allowed(allow())),
        };
        let parts = |tenant, principal, identity| RequestParts {
            env,
            head: head.clone(),
            body: body.clone(),
            tenant,
            principal,
            identity,
            id: id.clone(),
        };
        let (config, platform) = (env.config, env.platform);
        let host = tenancy::request_host(
            &head.headers,
            &head.uri,
            config.tenancy.trust_forwarded_host,
        );
        let on_platform_host = host.as_deref() == Some(config.platform.host.as_str());
        if access == Access::Open || access.on_platform_host() {
            let Some(route) = route else {
                return Err(ApiError::method_not_allowed(allow()));
            };
            // Platform routes do not exist on tenant hosts, nor tenant routes on the platform's.
            if access.on_platform_host() && !on_platform_host {
                return Err(ApiError::no_route());
            }
            // The platform API is limited per client IP (there is no tenant to count against).
            let verdict = match access {
                Access::Open => ratelimit::Verdict::default(),
                _ => {
                    let class = ratelimit::Class::of(&head.method, true);
                    ratelimit::check(platform, config, class, None, &head.headers).await
                }
            };
            if let Some(refusal) = verdict.refusal() {
                let mut resp = refusal
                    .into_traced_response(head.uri.path(), platform.trace())
                    .map(Body::Full);
                verdict.decorate(resp.headers_mut());
                return Ok(resp);
            }
            let (principal, identity) = match access {
                Access::Open => (None, None),
                _ => {
                    let (p, i) = sign_in(env, &head.headers, None).await?;
                    if access == Access::PlatformAdmin && !i.platform_admin {
                        return Err(ApiError::new(
                            Code::PlatformAdminRequired,
                            "The platform API needs a platform administrator's token.",
                        ));
                    }
                    (Some(p), Some(i))
                }
            };
            let mut resp = (route.handler)(parts(None, principal, identity)).await?;
            verdict.decorate(resp.headers_mut());
            if is_head {
                *resp.body_mut() = Body::empty();
            }
            return Ok(resp);
        }
        if on_platform_host {
            return Err(ApiError::no_route());
        }

        // Tenant routes: tenant from Host, CORS, then credentials and the handler.
        let tenant = tenancy::resolve(platform, config, host.as_deref()).await?;
        crate::ports::note(platform, |t| {
            t.note_tenant(tenant.id.as_str(), &tenant.tier)
        });
        let origin = cors::allowed_origin(config, &tenant, &head.headers, host.as_deref());
        if is_options {
            return match head.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD) {
                Some(m) => cors::preflight(origin, &allow(), m.to_str().unwrap_or_default())
                    .map(|r| r.map(Body::Full)),
                None => {
                    let mut resp = Response::new(Body::empty());
                    *resp.status_mut() = http::StatusCode::NO_CONTENT;
                    let list = allow()
                        .iter()
                        .map(Method::as_str)
                        .collect::<Vec<_>>()
                        .join(", ");
                    if let Ok(v) = HeaderValue::from_str(&list) {
                        resp.headers_mut().insert(header::ALLOW, v);
                    }
                    Ok(resp)
                }
            };
        }
        // Limits before credentials: a flood of bad tokens costs a counter, not a verification.
        let verdict = match route {
            Some(route) => {
                let class = ratelimit::Class::of(&head.method, route.access != Access::Public);
                ratelimit::check(platform, config, class, Some(&tenant), &head.headers).await
            }
            None => ratelimit::Verdict::default(),
        };
        // A write by the tenant's team (catalog, files, orders, settings): what the instance
        // kept of the tenant's public answers goes once it succeeds (`answers`). Shoppers'
        // writes (visits, chat, checkout) keep them: they change no answer but stock, which a
        // kept page may show up to its TTL late, as a CDN may within `max-age`.
        let writer = (!head.method.is_safe() && route.is_some_and(|r| r.access != Access::Public))
            .then(|| tenant.clone());
        let result = match (route, verdict.refusal()) {
            (_, Some(refusal)) => Err(refusal),
            (Some(route), None) => {
                match authenticate(env, route.access, &tenant, &head.headers).await {
                    Ok((principal, identity)) => {
                        (route.handler)(parts(Some(tenant), principal, identity)).await
                    }
                    Err(e) => Err(e),
                }
            }
            (None, None) => Err(ApiError::method_not_allowed(allow())),
        };
        if let (Some(t), Ok(resp)) = (&writer, &result) {
            if resp.status().is_success() {
                env.answers.forget(t.id.as_str());
            }
        }
        let mut resp = result.unwrap_or_else(|e| {
            e.into_traced_response(head.uri.path(), platform.trace())
                .map(Body::Full)
        });
        verdict.decorate(resp.headers_mut());
        // Errors carry CORS headers too, so browser code can read the problem document.
        cors::decorate(resp.headers_mut(), origin);
        if is_head {
            *resp.body_mut() = Body::empty();
        }
        Ok(resp)
    }
}

type Caller = (Option<Rc<Principal>>, Option<Rc<Identity>>);

/// Verifies the bearer token and resolves who the caller is to us (on `tenant`, if any).
async fn sign_in<P: Platform>(
    env: Env<'_, P>,
    headers: &http::HeaderMap,
    tenant: Option<&tenancy::Tenant>,
) -> Result<(Rc<Principal>, Rc<Identity>), ApiError> {
    // A token is ≈ 1 KB: taken as bytes, read as text only when verified.
    let header = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let principal = env
        .auth
        .authenticate(env.platform, env.platform.verifier(), header)
        .await?;
    let identity = identity::resolve(env.platform, env.config, &principal, tenant).await?;
    crate::ports::note(env.platform, |t| t.note_user(identity.user.as_str()));
    Ok((principal, Rc::new(identity)))
}

/// The caller a tenant route needs, authenticated and authorized for `tenant`; nobody for
/// public routes.
async fn authenticate<P: Platform>(
    env: Env<'_, P>,
    access: Access,
    tenant: &tenancy::Tenant,
    headers: &http::HeaderMap,
) -> Result<Caller, ApiError> {
    let required = match access {
        Access::Role(required) => Some(required),
        Access::SignedIn => None,
        _ => return Ok((None, None)),
    };
    let (principal, identity) = sign_in(env, headers, Some(tenant)).await?;
    if let Some(required) = required {
        authz::authorize(&principal, identity.role, tenant, required)?;
    }
    Ok((Some(principal), Some(identity)))
}

#[cfg(test)]
mod tests {
    use super::*;

    type P = crate::testing::TestPlatform;

    #[test]
    fn every_route_is_reachable() {
        let router = Router::<P>::new();
        for (i, r) in router.routes.iter().enumerate() {
            let m = router.paths.at(r.path).unwrap();
            assert!(m.value.contains(&i), "{} {}", r.method, r.path);
        }
    }

    #[test]
    fn every_v1_route_is_tenant_scoped_or_on_the_platform_host() {
        // Open access is for operational endpoints only; a /v1 route without a tenant would
        // bypass tenant resolution and authorization unless the platform host guards it.
        for r in table::<P>().iter().filter(|r| r.path.starts_with("/v1/")) {
            assert_ne!(r.access, Access::Open, "{}", r.path);
            assert_eq!(
                r.access.on_platform_host(),
                r.path.starts_with("/v1/platform/") || r.path == "/v1/signup",
                "{}",
                r.path
            );
        }
    }

    #[test]
    fn each_route_takes_its_body_limit_from_its_handler() {
        use crate::input::FromJson;
        let router = Router::<P>::new();
        let limit = |m: Method, path: &str| router.body_limit(&m, path);
        // Routes with a JSON body: that body type's limit.
        assert_eq!(
            limit(Method::POST, "/v1/catalog"),
            crate::catalog::NewItem::MAX_BODY
        );
        assert_eq!(limit(Method::POST, "/v1/catalog"), 16 * 1024);
        assert_eq!(limit(Method::PATCH, "/v1/tenant"), 64 * 1024);
        assert_eq!(limit(Method::POST, "/v1/members/invitations"), 4 * 1024);
        assert_eq!(limit(Method::POST, "/v1/storefront/visits"), 8 * 1024);
        // Routes without one, and HEAD like GET: the small default.
        assert_eq!(limit(Method::GET, "/v1/catalog"), NO_BODY_LIMIT);
        assert_eq!(limit(Method::HEAD, "/v1/catalog/abc"), NO_BODY_LIMIT);
        assert_eq!(limit(Method::DELETE, "/v1/catalog/abc"), NO_BODY_LIMIT);
        assert_eq!(limit(Method::POST, "/v1/platform/purge"), NO_BODY_LIMIT);
        // No route (unknown path, method or a preflight): the smallest of all.
        assert_eq!(limit(Method::POST, "/nowhere"), NO_BODY_LIMIT);
        assert_eq!(limit(Method::PUT, "/v1/catalog"), NO_BODY_LIMIT);
        assert_eq!(limit(Method::OPTIONS, "/v1/catalog"), NO_BODY_LIMIT);
        for r in &router.routes {
            assert!(r.body_limit >= NO_BODY_LIMIT, "{} {}", r.method, r.path);
        }
    }
}
