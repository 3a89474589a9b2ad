//! The route table: one row per (method, path) naming its handler. Adding an endpoint means
//! adding a row here, not another `if` somewhere (axum/matchit style).

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};

use crate::auth::{Authenticator, Principal};
use crate::authz::{self, Role};
use crate::body::Body;
use crate::config::Config;
use crate::error::ApiError;
use crate::ports::Platform;
use crate::tenancy::{self, Tenant};
use crate::{catalog, chat, cors, health, me, storefront, uploads};

/// What a handler gets besides the request. Only references: copy it into work that outlives
/// the handler (a streamed body's driver).
pub struct Ctx<'a, P> {
    pub config: &'a Config,
    pub platform: &'a P,
    pub auth: &'a Authenticator,
}

impl<P> Clone for Ctx<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for Ctx<'_, P> {}

/// What the route table established about the request before the handler runs.
pub struct Scope {
    pub tenant: Option<Tenant>,
    pub principal: Option<Principal>,
    /// The `{id}` path segment, for routes that have one.
    pub id: Option<String>,
}

impl Scope {
    /// The tenant of a tenant route (always resolved before its handler runs).
    pub fn tenant(&self) -> Result<&Tenant, ApiError> {
        self.tenant
            .as_ref()
            .ok_or_else(|| ApiError::InvalidHost("this endpoint is served on tenant hosts".into()))
    }

    /// The `{id}` segment as a UUID. Anything else names nothing here: 404 for `kind`, the
    /// same answer as another tenant's id, so ids reveal nothing.
    pub fn uuid(&self, kind: &'static str) -> Result<String, ApiError> {
        match self.id.as_deref() {
            Some(id) if crate::ids::is_uuid(id) => Ok(id.to_ascii_lowercase()),
            _ => Err(ApiError::ResourceNotFound(kind)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    Health,
    Me,
    CatalogList,
    CatalogCreate,
    CatalogGet,
    CatalogUpdate,
    CatalogArchive,
    StorefrontProfile,
    StorefrontList,
    StorefrontGet,
    Chat,
    ChatConversations,
    ChatMessages,
    UploadCreate,
    UploadComplete,
    FileList,
    FileGet,
    FileDelete,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Platform endpoints: no tenant, no credentials.
    Platform,
    /// A tenant's public endpoint (storefront): tenant from Host, no credentials.
    Public,
    /// A tenant's endpoint for authenticated users with at least this role.
    Role(Role),
}

struct Route {
    method: Method,
    path: &'static str,
    access: Access,
    handler: Handler,
}

const fn route(method: Method, path: &'static str, access: Access, handler: Handler) -> Route {
    Route {
        method,
        path,
        access,
        handler,
    }
}

const MEMBER: Access = Access::Role(Role::Member);
const ADMIN: Access = Access::Role(Role::Admin);

const ROUTES: &[Route] = &[
    route(Method::GET, "/healthz", Access::Platform, Handler::Health),
    route(Method::GET, "/v1/me", MEMBER, Handler::Me),
    route(Method::GET, "/v1/catalog", MEMBER, Handler::CatalogList),
    route(Method::POST, "/v1/catalog", ADMIN, Handler::CatalogCreate),
    route(Method::GET, "/v1/catalog/{id}", MEMBER, Handler::CatalogGet),
    route(
        Method::PATCH,
        "/v1/catalog/{id}",
        ADMIN,
        Handler::CatalogUpdate,
    ),
    route(
        Method::DELETE,
        "/v1/catalog/{id}",
        ADMIN,
        Handler::CatalogArchive,
    ),
    route(
        Method::GET,
        "/v1/storefront",
        Access::Public,
        Handler::StorefrontProfile,
    ),
    route(
        Method::GET,
        "/v1/storefront/catalog",
        Access::Public,
        Handler::StorefrontList,
    ),
    route(
        Method::GET,
        "/v1/storefront/catalog/{id}",
        Access::Public,
        Handler::StorefrontGet,
    ),
    route(Method::POST, "/v1/chat", MEMBER, Handler::Chat),
    route(
        Method::GET,
        "/v1/chat/conversations",
        MEMBER,
        Handler::ChatConversations,
    ),
    route(
        Method::GET,
        "/v1/chat/conversations/{id}/messages",
        MEMBER,
        Handler::ChatMessages,
    ),
    route(
        Method::POST,
        "/v1/storefront/chat",
        Access::Public,
        Handler::Chat,
    ),
    route(
        Method::GET,
        "/v1/storefront/chat/conversations/{id}/messages",
        Access::Public,
        Handler::ChatMessages,
    ),
    route(Method::POST, "/v1/uploads", MEMBER, Handler::UploadCreate),
    route(
        Method::POST,
        "/v1/uploads/{id}/complete",
        MEMBER,
        Handler::UploadComplete,
    ),
    route(Method::GET, "/v1/files", MEMBER, Handler::FileList),
    route(Method::GET, "/v1/files/{id}", MEMBER, Handler::FileGet),
    route(
        Method::DELETE,
        "/v1/files/{id}",
        MEMBER,
        Handler::FileDelete,
    ),
];

/// Path matcher built once per instance from [`ROUTES`].
pub struct Router {
    paths: matchit::Router<Vec<usize>>,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    pub fn new() -> Self {
        let mut grouped: Vec<(&'static str, Vec<usize>)> = Vec::new();
        for (i, r) in ROUTES.iter().enumerate() {
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
        Self { paths }
    }

    pub async fn dispatch<'a, P: Platform>(
        &self,
        ctx: Ctx<'a, P>,
        req: Request<Bytes>,
    ) -> Result<Response<Body<'a>>, ApiError> {
        let ctx = &ctx;
        let matched = self
            .paths
            .at(req.uri().path())
            .map_err(|_| ApiError::NotFound)?;
        let id = matched.params.get("id").map(str::to_owned);
        let candidates = || matched.value.iter().filter_map(|i| ROUTES.get(*i));
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
                .ok_or_else(|| ApiError::MethodNotAllowed {
                    allow: allow.clone(),
                })?,
            (None, false) => return Err(ApiError::MethodNotAllowed { allow }),
        };
        if access == Access::Platform {
            let mut resp = match route.map(|r| r.handler) {
                Some(Handler::Health) => health::get(ctx, &req).await?,
                _ => return Err(ApiError::MethodNotAllowed { allow }),
            };
            if is_head {
                *resp.body_mut() = Bytes::new();
            }
            return Ok(resp.map(Body::Full));
        }

        // Tenant routes: tenant from Host, CORS, then credentials and the handler.
        let tenant = tenancy::resolve(ctx.platform, ctx.config, req.headers(), req.uri()).await?;
        let host = tenancy::request_host(
            req.headers(),
            req.uri(),
            ctx.config.tenancy.trust_forwarded_host,
        );
        let origin = cors::allowed_origin(
            ctx.platform,
            ctx.config,
            &tenant,
            req.headers(),
            host.as_deref(),
        )
        .await;
        if is_options {
            return match req.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD) {
                Some(m) => cors::preflight(origin, &allow, m.to_str().unwrap_or_default())
                    .map(|r| r.map(Body::Full)),
                None => {
                    let mut resp = Response::new(Bytes::new());
                    *resp.status_mut() = http::StatusCode::NO_CONTENT;
                    if let Ok(v) = HeaderValue::from_str(
                        &allow
                            .iter()
                            .map(Method::as_str)
                            .collect::<Vec<_>>()
                            .join(", "),
                    ) {
                        resp.headers_mut().insert(header::ALLOW, v);
                    }
                    Ok(resp.map(Body::Full))
                }
            };
        }
        let instance = req.uri().path().to_owned();
        let mut resp = match route {
            Some(route) => {
                let scope = Scope {
                    tenant: Some(tenant),
                    principal: None,
                    id,
                };
                match self.run(*ctx, route, scope, req).await {
                    Ok(resp) => resp,
                    Err(e) => e.into_response(&instance).map(Body::Full),
                }
            }
            None => ApiError::MethodNotAllowed { allow }
                .into_response(&instance)
                .map(Body::Full),
        };
        // Errors carry CORS headers too, so browser code can read the problem document.
        cors::decorate(resp.headers_mut(), origin);
        if is_head {
            *resp.body_mut() = Body::empty();
        }
        Ok(resp)
    }

    async fn run<'a, P: Platform>(
        &self,
        ctx: Ctx<'a, P>,
        route: &Route,
        mut scope: Scope,
        req: Request<Bytes>,
    ) -> Result<Response<Body<'a>>, ApiError> {
        let full = |r: Result<Response<Bytes>, ApiError>| r.map(|r| r.map(Body::Full));
        let (ctx, req) = (&ctx, &req);
        if let (Access::Role(required), Some(tenant)) = (route.access, &scope.tenant) {
            let header = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let principal = ctx
                .auth
                .authenticate(ctx.platform, ctx.platform.verifier(), header)
                .await
                .map_err(|e| {
                    if e.is_unavailable() {
                        ApiError::AuthUnavailable(e.detail())
                    } else {
                        ApiError::Unauthenticated {
                            code: e.code(),
                            detail: e.detail(),
                        }
                    }
                })?;
            authz::authorize(&principal, tenant, required)?;
            scope.principal = Some(principal);
        }
        match route.handler {
            Handler::Health => full(health::get(ctx, req).await),
            Handler::Me => full(me::get(&scope)),
            Handler::CatalogList => full(catalog::list(ctx, &scope, req).await),
            Handler::CatalogCreate => full(catalog::create(ctx, &scope, req).await),
            Handler::CatalogGet => full(catalog::get(ctx, &scope).await),
            Handler::CatalogUpdate => full(catalog::update(ctx, &scope, req).await),
            Handler::CatalogArchive => full(catalog::archive(ctx, &scope, req).await),
            Handler::StorefrontProfile => full(storefront::profile(ctx, &scope, req)),
            Handler::StorefrontList => full(storefront::list(ctx, &scope, req).await),
            Handler::StorefrontGet => full(storefront::get(ctx, &scope, req).await),
            Handler::ChatConversations => full(chat::conversations(ctx, &scope, req).await),
            Handler::ChatMessages => full(chat::messages(ctx, &scope, req).await),
            Handler::UploadCreate => full(uploads::create(ctx, &scope, req).await),
            Handler::UploadComplete => full(uploads::complete(ctx, &scope).await),
            Handler::FileList => full(uploads::list(ctx, &scope, req).await),
            Handler::FileGet => full(uploads::get(ctx, &scope, req).await),
            Handler::FileDelete => full(uploads::delete(ctx, &scope).await),
            Handler::Chat => chat::post(*ctx, scope, req).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_reachable() {
        let router = Router::new();
        for (i, r) in ROUTES.iter().enumerate() {
            let m = router.paths.at(r.path).unwrap();
            assert!(m.value.contains(&i), "{} {}", r.method, r.path);
        }
    }

    #[test]
    fn every_v1_route_is_tenant_scoped() {
        // Platform access is for operational endpoints only; a /v1 route without a tenant would
        // bypass tenant resolution and authorization.
        for r in ROUTES.iter().filter(|r| r.path.starts_with("/v1/")) {
            assert_ne!(r.access, Access::Platform, "{}", r.path);
        }
    }
}
