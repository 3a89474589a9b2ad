//! The route table: one row per (method, path) naming its handler. Adding an endpoint means
//! adding a row here, not another `if` somewhere (axum/matchit style).

use bytes::Bytes;
use http::{Method, Request, Response};

use crate::auth::{Authenticator, Principal};
use crate::authz::{self, Role};
use crate::config::Config;
use crate::error::ApiError;
use crate::ports::Platform;
use crate::tenancy::{self, Tenant};
use crate::{health, me, uploads};

/// What a handler gets besides the request.
pub struct Ctx<'a, P> {
    pub config: &'a Config,
    pub platform: &'a P,
    pub auth: &'a Authenticator,
}

/// What the route table established about the request before the handler runs.
pub struct Scope {
    pub tenant: Option<Tenant>,
    pub principal: Option<Principal>,
    /// Path parameters (`{id}`), percent-decoding left to the handler.
    pub params: Vec<(String, String)>,
}

impl Scope {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    Health,
    Me,
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
    /// A tenant's public endpoint (storefront): tenant from Host, no credentials, CORS.
    #[allow(dead_code)] // the storefront routes (catalog) use it
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

const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: "/healthz",
        access: Access::Platform,
        handler: Handler::Health,
    },
    Route {
        method: Method::GET,
        path: "/v1/me",
        access: Access::Role(Role::Member),
        handler: Handler::Me,
    },
    Route {
        method: Method::POST,
        path: "/v1/uploads",
        access: Access::Role(Role::Member),
        handler: Handler::UploadCreate,
    },
    Route {
        method: Method::POST,
        path: "/v1/uploads/{id}/complete",
        access: Access::Role(Role::Member),
        handler: Handler::UploadComplete,
    },
    Route {
        method: Method::GET,
        path: "/v1/files",
        access: Access::Role(Role::Member),
        handler: Handler::FileList,
    },
    Route {
        method: Method::GET,
        path: "/v1/files/{id}",
        access: Access::Role(Role::Member),
        handler: Handler::FileGet,
    },
    Route {
        method: Method::DELETE,
        path: "/v1/files/{id}",
        access: Access::Role(Role::Member),
        handler: Handler::FileDelete,
    },
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

    pub async fn dispatch<P: Platform>(
        &self,
        ctx: &Ctx<'_, P>,
        req: Request<Bytes>,
    ) -> Result<Response<Bytes>, ApiError> {
        let matched = self
            .paths
            .at(req.uri().path())
            .map_err(|_| ApiError::NotFound)?;
        let candidates = || matched.value.iter().filter_map(|i| ROUTES.get(*i));
        let params: Vec<(String, String)> = matched
            .params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        // HEAD is GET without a body, for every GET route.
        let is_head = req.method() == Method::HEAD;
        let wanted = if is_head { &Method::GET } else { req.method() };
        let Some(route) = candidates().find(|r| r.method == *wanted) else {
            let mut allow: Vec<Method> = candidates().map(|r| r.method.clone()).collect();
            if allow.contains(&Method::GET) {
                allow.push(Method::HEAD);
            }
            return Err(ApiError::MethodNotAllowed { allow });
        };
        let tenant = match route.access {
            Access::Platform => None,
            Access::Public | Access::Role(_) => {
                Some(tenancy::resolve(ctx.platform, ctx.config, req.headers(), req.uri()).await?)
            }
        };
        let principal = match (route.access, &tenant) {
            (Access::Role(required), Some(tenant)) => {
                let header = req
                    .headers()
                    .get(http::header::AUTHORIZATION)
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
                Some(principal)
            }
            _ => None,
        };
        let scope = Scope {
            tenant,
            principal,
            params,
        };
        let mut resp = match route.handler {
            Handler::Health => health::get(ctx, &req).await?,
            Handler::Me => me::get(&scope)?,
            Handler::UploadCreate => uploads::create(ctx, &scope, &req).await?,
            Handler::UploadComplete => uploads::complete(ctx, &scope).await?,
            Handler::FileList => uploads::list(ctx, &scope, &req).await?,
            Handler::FileGet => uploads::get(ctx, &scope, &req).await?,
            Handler::FileDelete => uploads::delete(ctx, &scope).await?,
        };
        if is_head {
            *resp.body_mut() = Bytes::new();
        }
        Ok(resp)
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
