//! The route table: one line per endpoint naming method, path, who may call it and the
//! handler (axum/matchit style). The router resolves the tenant, answers CORS, authenticates and
//! authorizes *before* a handler runs, so handlers receive typed contexts (`cx::Member`,
//! `cx::Public`) with nothing left to re-check.

use std::rc::Rc;

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use http::{header, HeaderValue, Method, Request, Response};

use crate::authz::{self, Role};
use crate::body::Body;
use crate::commerce::{checkout, orders, visits};
use crate::cx::{Env, Handler, RequestParts};
use crate::error::ApiError;
use crate::ports::Platform;
use crate::{catalog, chat, cors, health, me, storefront, tenancy, uploads};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Platform endpoints: no tenant, no credentials.
    Platform,
    /// A tenant's public endpoint (storefront): tenant from Host, no credentials.
    Public,
    /// A tenant's endpoint for authenticated users with at least this role.
    Role(Role),
}

const PLATFORM: Access = Access::Platform;
const PUBLIC: Access = Access::Public;
const MEMBER: Access = Access::Role(Role::Member);
const ADMIN: Access = Access::Role(Role::Admin);

/// A handler with its arguments extracted, boxed so that one table holds them all.
pub type BoxedHandler<P> =
    for<'a> fn(RequestParts<'a, P>) -> LocalBoxFuture<'a, Result<Response<Body<'a>>, ApiError>>;

pub struct Route<P> {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: BoxedHandler<P>,
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
                },
            )*]
        }
    };
}

routes! {
    GET    "/healthz"                                          PLATFORM => health::get,
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

    pub async fn dispatch<'a>(
        &self,
        env: Env<'a, P>,
        req: Request<Bytes>,
    ) -> Result<Response<Body<'a>>, ApiError> {
        let matched = self
            .paths
            .at(req.uri().path())
            .map_err(|_| ApiError::no_route())?;
        let id = matched.params.get("id").map(str::to_owned);
        let candidates = || matched.value.iter().filter_map(|i| self.routes.get(*i));
        let mut allow: Vec<Method> = candidates().map(|r| r.method.clone()).collect();
        if allow.contains(&Method::GET) {
            allow.push(Method::HEAD);
        }
        // HEAD is GET without a body, for every GET route.
        let is_head = req.method() == Method::HEAD;
        let is_options = req.method() == Method::OPTIONS;
        let wanted = if is_head { &Method::GET } else { req.method() };
        let route = candidates().find(|r| r.method == *wanted);
        let access = match (route, is_options) {
            (Some(r), _) => r.access,
            // Preflights are answered for the path's routes, before any credentials.
            (None, true) => candidates()
                .map(|r| r.access)
                .find(|a| *a != Access::Platform)
                .ok_or_else(|| ApiError::method_not_allowed(allow.clone()))?,
            (None, false) => return Err(ApiError::method_not_allowed(allow)),
        };
        let (head, body) = req.into_parts();
        let head = Rc::new(head);
        let parts = |tenant, principal| RequestParts {
            env,
            head: head.clone(),
            body: body.clone(),
            tenant,
            principal,
            id: id.clone(),
        };
        if access == Access::Platform {
            let Some(route) = route else {
                return Err(ApiError::method_not_allowed(allow));
            };
            let mut resp = (route.handler)(parts(None, None)).await?;
            if is_head {
                *resp.body_mut() = Body::empty();
            }
            return Ok(resp);
        }

        // Tenant routes: tenant from Host, CORS, then credentials and the handler.
        let (config, platform) = (env.config, env.platform);
        let tenant = tenancy::resolve(platform, config, &head.headers, &head.uri).await?;
        let host = tenancy::request_host(
            &head.headers,
            &head.uri,
            config.tenancy.trust_forwarded_host,
        );
        let origin =
            cors::allowed_origin(platform, config, &tenant, &head.headers, host.as_deref()).await;
        if is_options {
            return match head.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD) {
                Some(m) => cors::preflight(origin, &allow, m.to_str().unwrap_or_default())
                    .map(|r| r.map(Body::Full)),
                None => {
                    let mut resp = Response::new(Body::empty());
                    *resp.status_mut() = http::StatusCode::NO_CONTENT;
                    let list = allow
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
        let instance = head.uri.path().to_owned();
        let result = match route {
            Some(route) => {
                let tenant = Rc::new(tenant);
                match authenticate(env, route.access, &tenant, &head.headers).await {
                    Ok(principal) => (route.handler)(parts(Some(tenant), principal)).await,
                    Err(e) => Err(e),
                }
            }
            None => Err(ApiError::method_not_allowed(allow)),
        };
        let mut resp = result.unwrap_or_else(|e| e.into_response(&instance).map(Body::Full));
        // Errors carry CORS headers too, so browser code can read the problem document.
        cors::decorate(resp.headers_mut(), origin);
        if is_head {
            *resp.body_mut() = Body::empty();
        }
        Ok(resp)
    }
}

/// The principal a role route needs, authenticated and authorized for `tenant`; none for
/// public routes.
async fn authenticate<P: Platform>(
    env: Env<'_, P>,
    access: Access,
    tenant: &tenancy::Tenant,
    headers: &http::HeaderMap,
) -> Result<Option<Rc<crate::auth::Principal>>, ApiError> {
    let Access::Role(required) = access else {
        return Ok(None);
    };
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = env
        .auth
        .authenticate(env.platform, env.platform.verifier(), header)
        .await?;
    authz::authorize(&principal, tenant, required)?;
    Ok(Some(Rc::new(principal)))
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
    fn every_v1_route_is_tenant_scoped() {
        // Platform access is for operational endpoints only; a /v1 route without a tenant would
        // bypass tenant resolution and authorization.
        for r in table::<P>().iter().filter(|r| r.path.starts_with("/v1/")) {
            assert_ne!(r.access, Access::Platform, "{}", r.path);
        }
    }
}
