//! edgefront-core: every behaviour of the edge API, with no I/O of its own.
//!
//! A runtime adapter (Workers, Spin, a test) builds an [`Edge`] once per instance from its
//! configuration source and a [`Platform`] (outbound HTTP, key-value, clock, entropy), then feeds it
//! platform-neutral `http` requests. Time, randomness and the network are inputs, as in quinn-proto,
//! so the same code runs on the host, `wasm32-unknown-unknown` and `wasm32-wasip2`.
#![forbid(unsafe_code)]

// Layers, lowest first; a module imports only from layers below it (a test in
// tests/layering.rs proves the module graph has no cycle):
// - leaves: `code` (the error-code table), `jwk`, `obs` (the request record), `ports`, `ids`,
//   `body`, `memo`, `expiring`
// - services: `auth`, `config`, `sql`, `s3`, `doh` (DNS over HTTPS: custom-domain checks)
// - the API's edges: `error` (problem+json), `input` (reading requests), `reply`, `page`
// - request state: `tenancy`, `authz`, `identity` (user ids and roles, ours), `cors`, `cx`
//   (typed handler contexts), `visitor`
// - capabilities (handlers): `health`, `me`, `catalog`, `storefront`, `uploads`, `chat/`,
//   `commerce/`, `team` (members, invitations), `settings` (the tenant's settings, domains,
//   usage), `platform` (the platform API, sign-up), `audit` (the audit log's listing)
// - `routes` (the table), and `Edge` here.
pub mod audit;
pub mod auth;
pub mod authz;
pub mod body;
pub mod catalog;
pub mod chat;
pub mod code;
pub mod commerce;
pub mod config;
pub mod cors;
pub mod cx;
pub mod doh;
pub mod error;
pub mod expiring;
pub mod health;
pub mod identity;
pub mod ids;
pub mod input;
pub mod jwk;
pub mod me;
pub mod memo;
pub mod obs;
pub mod page;
pub mod platform;
pub mod ports;
pub mod rate_policy;
pub mod ratelimit;
pub mod reply;
pub mod routes;
pub mod s3;
pub mod settings;
pub mod sql;
pub mod storefront;
pub mod team;
pub mod tenancy;
pub mod uploads;
pub mod visitor;
pub mod window;

#[cfg(test)]
mod edge_tests;
#[cfg(test)]
pub(crate) mod testing;

use bytes::Bytes;
use futures_util::Stream;
use http::{request, Method, Request, Response};

pub use body::Body;
pub use config::{Config, ConfigError, ConfigSource};
pub use error::ApiError;
pub use ports::{Clock, Entropy, HttpClient, KeyValue, OutboundError, Platform};

/// The crate version reported by `/healthz`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One edge instance: validated configuration plus the platform's ports.
///
/// Configuration is read once, when the instance starts. A bad configuration does not panic:
/// the instance answers every request with a 500 problem+json that names the setting.
pub struct Edge<P> {
    config: Result<Config, ConfigError>,
    /// JWKS cache and verification state, per instance.
    auth: Option<auth::Authenticator>,
    platform: memo::Memo<P>,
    routes: routes::Router<memo::Memo<P>>,
}

impl<P: Platform> Edge<P> {
    pub fn new(source: &dyn ConfigSource, platform: P) -> Self {
        let config = Config::load(source);
        let auth = config
            .as_ref()
            .ok()
            .map(|c| auth::Authenticator::new(c.auth.clone()));
        Self {
            config,
            auth,
            platform: memo::Memo::new(platform),
            routes: routes::Router::new(),
        }
    }

    pub fn platform(&self) -> &P {
        self.platform.inner()
    }

    /// Handles one request. Never panics; every failure becomes a problem+json response.
    /// Streamed bodies are gathered: adapters that can stream use [`Edge::serve`].
    pub async fn handle(&self, req: Request<Bytes>) -> Response<Bytes> {
        let (parts, body) = self.serve(req).await.into_parts();
        Response::from_parts(parts, body.collect().await)
    }

    /// The largest body a request for `method` and `path` may send (its route's; see
    /// [`routes::Router::body_limit`]). Adapters reading through [`Edge::serve_body`] need not
    /// ask: it is for runtimes that cap the body themselves.
    pub fn body_limit(&self, method: &Method, path: &str) -> usize {
        self.routes.body_limit(method, path)
    }

    /// Handles one request whose body is still the runtime's stream: reads it within the route's
    /// limit first ([`input::read_body`]: a declared or actual length over it is 413 before
    /// routing, authentication or reading the rest), then serves it like [`Edge::serve`].
    /// What is left of a refused body stays in `chunks`: once the answer is out, the adapter
    /// discards a bounded amount of it ([`input::discard`], [`input::LINGER_BYTES`]).
    pub async fn serve_body<'e, S, C, E>(
        &'e self,
        head: request::Parts,
        chunks: &mut S,
    ) -> Response<Body<'e>>
    where
        S: Stream<Item = Result<C, E>> + Unpin,
        C: AsRef<[u8]>,
    {
        let limit = self.body_limit(&head.method, head.uri.path());
        match input::read_body(&head.headers, chunks, limit).await {
            Ok(body) => self.serve(Request::from_parts(head, body)).await,
            Err(err) => err.into_response(head.uri.path()).map(Body::Full),
        }
    }

    /// Handles one request, leaving a streamed body (server-sent events) to the adapter.
    pub async fn serve(&self, req: Request<Bytes>) -> Response<Body<'_>> {
        let instance = req.uri().path().to_owned();
        // The same limit whether or not the adapter read the body through `serve_body`.
        let limit = self.body_limit(req.method(), &instance);
        if req.body().len() > limit {
            return ApiError::payload_too_large(limit)
                .into_response(&instance)
                .map(Body::Full);
        }
        match self.dispatch(req).await {
            Ok(resp) => resp,
            Err(err) => err.into_response(&instance).map(Body::Full),
        }
    }

    async fn dispatch(&self, req: Request<Bytes>) -> Result<Response<Body<'_>>, ApiError> {
        let config = self
            .config
            .as_ref()
            .map_err(|e| ApiError::from(e.clone()))?;
        let auth = self.auth.as_ref().ok_or_else(|| {
            ApiError::from(ConfigError {
                setting: "JWT_ISSUERS",
                problem: "no authenticator".into(),
            })
        })?;
        let env = cx::Env {
            config,
            platform: &self.platform,
            auth,
        };
        self.routes.dispatch(env, req).await
    }
}
