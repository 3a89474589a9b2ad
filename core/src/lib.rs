//! edgefront-core: every behaviour of the edge API, with no I/O of its own.
//!
//! A runtime adapter (Workers, Spin, a test) builds an [`Edge`] once per instance from its
//! configuration source and a [`Platform`] (outbound HTTP, key-value, clock, entropy), then feeds it
//! platform-neutral `http` requests. Time, randomness and the network are inputs, as in quinn-proto,
//! so the same code runs on the host, `wasm32-unknown-unknown` and `wasm32-wasip2`.
// One reviewed exception, `request_headers::shared_header_value` (its SAFETY comment says why it
// holds).
#![deny(unsafe_code)]

// Layers, lowest first; a module imports only from layers below it (a test in
// tests/layering.rs proves the module graph has no cycle):
// - leaves: `code` (the error-code table), `jwk`, `obs` (the request record), `ports`, `ids`,
//   `body`, `memo`, `expiring`, `words` (byte scans eight bytes at a time)
// - services: `auth`, `config`, `sql`, `s3`, `doh` (DNS over HTTPS: custom-domain checks),
//   `telemetry` (the request's own platform, its log lines and spans)
// - the API's edges: `error` (problem+json), `input` (reading requests), `reply`, `page`
// - request state: `tenancy`, `authz`, `identity` (user ids and roles, ours), `cors`, `cx`
//   (typed handler contexts), `visitor`
// - capabilities (handlers): `health`, `me`, `catalog`, `storefront`, `uploads`, `chat/`,
//   `commerce/`, `team` (members, invitations), `settings` (the tenant's settings, domains,
//   usage), `platform` (the platform API, sign-up), `audit` (the audit log's listing)
// - `routes` (the table), and `Edge` here.
pub mod answers;
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
pub mod json_writer;
pub mod jwk;
pub mod lease;
pub mod me;
pub mod memo;
pub mod obs;
pub mod outcome;
pub mod page;
pub mod platform;
pub mod ports;
pub mod rate_policy;
pub mod ratelimit;
pub mod reply;
pub mod request_headers;
pub mod rfc3339;
pub mod routes;
pub mod s3;
pub mod settings;
pub mod sigv4;
pub mod sql;
pub mod sql_answer;
pub mod storefront;
pub mod team;
pub mod telemetry;
pub mod tenancy;
pub mod uploads;
pub mod visitor;
pub mod window;
pub mod words;

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

/// The platform a request runs on: the instance's (with its memory tier), plus the request's
/// trace ([`telemetry::Traced`]).
pub type RequestPlatform<P> = telemetry::Traced<memo::Memo<P>>;

/// One edge instance: validated configuration plus the platform's ports.
///
/// Configuration is read once, when the instance starts. A bad configuration does not panic:
/// the instance answers every request with a 500 problem+json that names the setting.
///
/// A request goes: [`Edge::begin`] (its id and trace), [`Edge::serve_body`] (the response),
/// and once the response is sent, [`Edge::finish`] (its log line, its spans). [`Edge::handle`]
/// does all three for runtimes and tests that gather the body.
pub struct Edge<P> {
    config: Result<Config, ConfigError>,
    /// JWKS cache and verification state, per instance.
    auth: Option<auth::Authenticator>,
    platform: std::rc::Rc<memo::Memo<P>>,
    targets: std::rc::Rc<telemetry::Targets>,
    spans: telemetry::SpanBatch,
    routes: routes::Router<RequestPlatform<P>>,
    /// The request headers core reads; [`Edge::serve`] drops the others.
    request_headers: request_headers::RequestHeaders,
    /// The buffer a runtime writes request heads into ([`Edge::read_head`]).
    head: request_headers::HeadBuffer,
    /// Public answers this instance serves again while fresh ([`answers`]).
    answers: answers::Answers,
}

impl<P: Platform> Edge<P> {
    pub fn new(source: &dyn ConfigSource, platform: P) -> Self {
        let config = Config::load(source);
        let auth = config
            .as_ref()
            .ok()
            .map(|c| auth::Authenticator::new(c.auth.clone()));
        let targets = config
            .as_ref()
            .map(telemetry::Targets::from_config)
            .unwrap_or_default();
        Self {
            auth,
            platform: std::rc::Rc::new(memo::Memo::new(platform)),
            targets: std::rc::Rc::new(targets),
            spans: telemetry::SpanBatch::default(),
            routes: routes::Router::new(),
            request_headers: request_headers::RequestHeaders::new(config.as_ref().ok()),
            head: request_headers::HeadBuffer::default(),
            answers: answers::Answers::for_storefront(config.as_ref().ok().map(|c| &c.tenancy)),
            config,
        }
    }

    /// The only request headers core reads: an adapter may hand over just these (one
    /// `Headers.get` each on Workers instead of copying every header into wasm). Whatever else
    /// it hands over, [`Edge::serve`] drops.
    pub fn request_headers(&self) -> &[http::HeaderName] {
        self.request_headers.names()
    }

    /// A request's head from a runtime that writes it into a buffer it is given (see
    /// [`request_headers::head_bytes`]; [`request_headers::head_parts`] reads it): the
    /// instance's one buffer, so a request costs a copy of its head.
    pub fn read_head(&self, encode: impl FnMut(&mut [u8]) -> i32) -> Bytes {
        self.head.read(encode)
    }

    /// Serves one `GET /healthz` and drops its answer, unlogged: routing, the handler, the
    /// response and the request's bookkeeping run once. On runtimes that compile wasm lazily
    /// (V8 compiles a function on its first call), an adapter calls this when the isolate
    /// starts, so the first real request does not also pay for compiling that code. It makes
    /// no call to any backend and changes no state a request can see. Returns the status it
    /// got (`None` if the answer had to wait, which /healthz never does).
    pub fn warm_up(&self) -> Option<http::StatusCode> {
        let host = self
            .config
            .as_ref()
            .map_or("localhost", |c| c.base_domain.as_str());
        let req = Request::get("/healthz")
            .header(http::header::HOST, host)
            .body(())
            .ok()?;
        let (head, ()) = req.into_parts();
        let rp = self.begin(&head);
        let mut none = futures_util::stream::empty::<Result<Bytes, ports::OutboundError>>();
        let serve = self.serve_body(&rp, head, &mut none);
        futures_util::FutureExt::now_or_never(serve).map(|r| r.status())
    }

    pub fn platform(&self) -> &P {
        self.platform.inner()
    }

    fn telemetry(&self) -> Option<&config::TelemetryConfig> {
        self.config.as_ref().ok().map(|c| &c.telemetry)
    }

    /// Starts a request: its id (from the trusted header, or fresh) and its trace.
    pub fn begin(&self, head: &request::Parts) -> RequestPlatform<P> {
        telemetry::Traced::begin(
            self.platform.clone(),
            self.targets.clone(),
            self.telemetry(),
            head,
        )
    }

    /// Ends a request once its response is sent: the log line(s), then the spans (bounded by
    /// their timeout; never the request's failure). `bytes_out`: the body's size, if known.
    pub async fn finish(&self, rp: &RequestPlatform<P>, status: u16, bytes_out: Option<u64>) {
        telemetry::finish(rp, self.telemetry(), &self.spans, status, bytes_out).await;
    }

    /// [`Edge::finish`] in two parts, for adapters that answer before the request's work is
    /// done: the log line(s) now, and the spans to export after the response (`None`: no OTLP
    /// endpoint, nothing left to run) with [`Edge::export_spans`].
    pub fn log_request(
        &self,
        rp: &RequestPlatform<P>,
        status: u16,
        bytes_out: Option<u64>,
    ) -> Option<telemetry::PendingSpans> {
        telemetry::log_request(rp, self.telemetry(), status, bytes_out)
    }

    /// Sends the spans [`Edge::log_request`] returned (bounded by the export timeout).
    pub async fn export_spans(&self, rp: &RequestPlatform<P>, spans: telemetry::PendingSpans) {
        telemetry::export(rp, self.telemetry(), &self.spans, spans).await;
    }

    /// Handles one request, start to finish. Never panics; every failure becomes a
    /// problem+json response. Streamed bodies are gathered: adapters that can stream use
    /// [`Edge::serve_body`].
    pub async fn handle(&self, req: Request<Bytes>) -> Response<Bytes> {
        let (head, body) = req.into_parts();
        let rp = self.begin(&head);
        let (parts, body) = self
            .serve(&rp, Request::from_parts(head, body))
            .await
            .into_parts();
        let body = body.collect().await;
        let size = u64::try_from(body.len()).ok();
        self.finish(&rp, parts.status.as_u16(), size).await;
        Response::from_parts(parts, body)
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
        rp: &'e RequestPlatform<P>,
        head: request::Parts,
        chunks: &mut S,
    ) -> Response<Body<'e>>
    where
        S: Stream<Item = Result<C, E>> + Unpin,
        C: AsRef<[u8]>,
    {
        let limit = || self.body_limit(&head.method, head.uri.path());
        match input::read_body(&head.headers, chunks, limit).await {
            Ok(body) => self.serve(rp, Request::from_parts(head, body)).await,
            Err(err) => stamped(rp, self.problem(rp, err, head.uri.path())),
        }
    }

    /// Handles one request, leaving a streamed body (server-sent events) to the adapter. A
    /// body over its route's limit is 413 here too (the route table checks it).
    pub async fn serve<'e>(
        &'e self,
        rp: &'e RequestPlatform<P>,
        mut req: Request<Bytes>,
    ) -> Response<Body<'e>> {
        self.request_headers.keep(req.headers_mut());
        let resp = match self.env(rp) {
            Ok(env) => self.routes.dispatch(env, req).await,
            Err(err) => self.problem(rp, err, req.uri().path()),
        };
        stamped(rp, resp)
    }

    fn problem<'e>(
        &self,
        rp: &RequestPlatform<P>,
        err: ApiError,
        instance: &str,
    ) -> Response<Body<'e>> {
        err.into_traced_response(instance, Some(rp.request_trace()))
            .map(Body::Full)
    }

    /// What every handler is given: the configuration, the request's platform, the
    /// authenticator; the configuration's error when the instance has none.
    fn env<'e>(
        &'e self,
        rp: &'e RequestPlatform<P>,
    ) -> Result<cx::Env<'e, RequestPlatform<P>>, ApiError> {
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
        Ok(cx::Env {
            config,
            platform: rp,
            auth,
            answers: &self.answers,
        })
    }
}

/// Every response names its request: `X-Request-Id`.
fn stamped<'e, P: Platform>(
    rp: &RequestPlatform<P>,
    mut resp: Response<Body<'e>>,
) -> Response<Body<'e>> {
    if let Ok(v) = request_headers::header_value(rp.request_trace().request_id().as_str()) {
        resp.headers_mut().insert(telemetry::REQUEST_ID, v);
    }
    resp
}
