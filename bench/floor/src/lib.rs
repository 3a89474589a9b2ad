//! The floor of a Rust Worker, for `cargo xtask bench --peer`: built like edge/worker (the same
//! `worker` crate, worker-build, its shim and profile) and exporting `fetch` the way
//! edge/worker does, but doing no work of its own. Two modes, chosen by its settings:
//!
//! - **bare** (no `FLOOR_ANSWERS`): every request gets `{"status":"ok"}` at once. What a wasm
//!   Worker pays before any work (the shim, the call into wasm, a `Response` built from wasm).
//! - **replay** (`FLOOR_ANSWERS`: `{"<path>": {"status", "headers": [[name, value]…], "body"}}`,
//!   edgefront's answers recorded by the benchmark): the request's method, URL and the headers
//!   core reads cross into wasm as edge/worker reads them (its `request_head.js`), and the
//!   recorded answer for the path goes out as edge/worker answers (headers as one JSON record
//!   through `JSON.parse`, the body copied out of wasm memory). What edgefront's answer costs
//!   to receive and send, without edgefront's logic.
//! - **lean** (`FLOOR_LEAN` beside `FLOOR_ANSWERS`: `{"host", "token"}`): replay, except that
//!   `GET /v1/me` is answered by doing that route's own work in the leanest way a Rust Worker
//!   could, from in-memory tables made at start from edgefront's recorded answer: the head
//!   read as edge/worker reads it and scanned for `Host` and `Authorization`; the route matched
//!   by comparison; the tenant found by host; the 1 KB token found among verified tokens (a
//!   hash of it and a compare) and its expiry checked against the clock; the caller's role on
//!   the tenant found; the request counted against a limit per client address and one per
//!   tenant (fixed windows in memory: what issue 13 requires of every limited route, in the
//!   simplest form), its `RateLimit` header written; a request id drawn
//!   (`crypto.getRandomValues`: issue 14's id on every answer); the answer written member by
//!   member with core's JSON writer and sent with edgefront's other headers as recorded. No log
//!   line (edgefront's `LOG_LEVEL` off rows have none either). What a Worker that does this
//!   route's required work with the fewest structures costs.
//! - **panic** (`FLOOR_PANIC` set): bare, except that `/panic` panics. `cargo xtask test` uses
//!   it to check that the Worker entry edgefront shares (edge/worker/src/entry.js) recovers:
//!   the next request is answered by a fresh instance of the module.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;

use serde::Deserialize;
use wasm_bindgen::prelude::*;

// Linked for what it exports to the shim (its init state), as in edge/worker.
use worker as _;

/// One recorded answer.
#[derive(Deserialize)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// A recorded answer, ready to send: its headers as the JSON edge/worker hands `JSON.parse`.
struct Ready {
    status: u16,
    headers_json: String,
    body: Vec<u8>,
}

#[wasm_bindgen(module = "/../../edge/worker/src/request_head.js")]
extern "C" {
    /// edge/worker's reading of a request's head (method, URL, the headers core reads), as
    /// UTF-8 into `buf`.
    fn request_head_into(request: &web_sys::Request, wanted: &js_sys::Array, buf: &mut [u8])
        -> i32;
}

#[wasm_bindgen(module = "/../../edge/worker/src/respond.js")]
extern "C" {
    /// edge/worker's answer: status, headers as JSON, body copied out of wasm memory.
    #[wasm_bindgen(catch)]
    fn respond(status: u16, headers: &str, body: &[u8]) -> Result<web_sys::Response, JsValue>;
}

thread_local! {
    /// The request headers edgefront's core reads with no optional setting configured (one
    /// fewer than edgefront's default configuration, which trusts `cf-connecting-ip`).
    static WANTED: js_sys::Array = edgefront_core::request_headers::RequestHeaders::new(None)
        .names()
        .iter()
        .map(|n| JsValue::from_str(n.as_str()))
        .collect();
    /// The mode, read from the settings once per instance of the module.
    static MODE: OnceCell<Mode> = const { OnceCell::new() };
}

enum Mode {
    Bare,
    /// The replay answers by path.
    Replay(HashMap<String, Ready>),
    /// The replay answers, and `/v1/me`'s work done leanly.
    Lean(HashMap<String, Ready>, Lean),
    Panic,
}

fn mode(env: &JsValue) -> Result<Mode, JsValue> {
    if js_sys::Reflect::has(env, &"FLOOR_PANIC".into())? {
        return Ok(Mode::Panic);
    }
    let Some(answers) = answers(env)? else {
        return Ok(Mode::Bare);
    };
    match js_sys::Reflect::get(env, &"FLOOR_LEAN".into())?.as_string() {
        Some(setting) => {
            let lean = Lean::new(&setting, &answers).map_err(|e| JsValue::from_str(&e))?;
            Ok(Mode::Lean(answers, lean))
        }
        None => Ok(Mode::Replay(answers)),
    }
}

fn answers(env: &JsValue) -> Result<Option<HashMap<String, Ready>>, JsValue> {
    let Some(text) = js_sys::Reflect::get(env, &"FLOOR_ANSWERS".into())?.as_string() else {
        return Ok(None);
    };
    let recorded: HashMap<String, Answer> =
        serde_json::from_str(&text).map_err(|e| JsValue::from_str(&e.to_string()))?;
    let mut ready = HashMap::new();
    for (path, a) in recorded {
        // As edge/worker's `headers_init` sends them.
        let mut map = http::HeaderMap::new();
        for (name, value) in &a.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| JsValue::from_str(&e.to_string()))?;
            let value = http::HeaderValue::from_str(value)
                .map_err(|e| JsValue::from_str(&e.to_string()))?;
            map.append(name, value);
        }
        let headers_json = edgefront_core::reply::headers_json(&map)
            .map_err(|e| JsValue::from_str(&e.to_string()))?;
        ready.insert(
            path,
            Ready {
                status: a.status,
                headers_json,
                body: a.body.into_bytes(),
            },
        );
    }
    Ok(Some(ready))
}

#[wasm_bindgen(js_name = fetch)]
pub fn fetch_handler(
    req: web_sys::Request,
    env: JsValue,
    _ctx: JsValue,
) -> Result<web_sys::Response, JsValue> {
    MODE.with(|cell| {
        if cell.get().is_none() {
            match mode(&env) {
                Ok(m) => {
                    let _ = cell.set(m);
                }
                // Settings it cannot use: said in the answer, where the benchmark shows it.
                Err(e) => {
                    let init = web_sys::ResponseInit::new();
                    init.set_status(500);
                    let text = e.as_string().unwrap_or_else(|| format!("{e:?}"));
                    let text = format!("bench/floor's settings: {text}");
                    return web_sys::Response::new_with_opt_str_and_init(Some(&text), &init);
                }
            }
        }
        match cell.get() {
            Some(Mode::Replay(answers)) => replay(&req, answers),
            Some(Mode::Lean(answers, lean)) => lean.serve(&req, answers),
            Some(Mode::Panic) if req.url().ends_with("/panic") => panic_now(),
            _ => bare(),
        }
    })
}

/// A Rust panic, as a bug would cause: `panic = "abort"` makes it a trap, which leaves this
/// instance of the module unusable.
#[allow(clippy::panic, reason = "the panic mode's purpose")]
fn panic_now() -> ! {
    panic!("bench/floor: /panic was requested")
}

/// edgefront's `/healthz` body, at once.
fn bare() -> Result<web_sys::Response, JsValue> {
    let headers = web_sys::Headers::new()?;
    headers.set("content-type", "application/json")?;
    let init = web_sys::ResponseInit::new();
    init.set_status(200);
    init.set_headers(&headers);
    web_sys::Response::new_with_opt_str_and_init(Some(r#"{"status":"ok"}"#), &init)
}

/// The recorded answer for the request's path (404 without one), after reading the request's
/// head into wasm as edge/worker does.
fn replay(
    req: &web_sys::Request,
    answers: &HashMap<String, Ready>,
) -> Result<web_sys::Response, JsValue> {
    replay_read(&read_head(req), answers)
}

/// The request's head, read into wasm as edge/worker reads it, then as text (one UTF-8 check,
/// which edge/worker makes no longer: it slices the bytes).
fn read_head(req: &web_sys::Request) -> String {
    WANTED.with(|wanted| {
        let bytes =
            edgefront_core::request_headers::head_bytes(|buf| request_head_into(req, wanted, buf));
        String::from_utf8(bytes).unwrap_or_default()
    })
}

/// [`replay`], the head read.
fn replay_read(head: &str, answers: &HashMap<String, Ready>) -> Result<web_sys::Response, JsValue> {
    let mut lines = head.split('\n');
    let _method = lines.next();
    let url = lines.next().unwrap_or("");
    let has_headers = lines.next().is_some();
    let path_and_query = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    let Some(a) = answers.get(path_and_query) else {
        return empty(404);
    };
    // Used, as edgefront uses what it reads: the answer depends on the request having headers.
    if !has_headers {
        return empty(400);
    }
    respond(a.status, &a.headers_json, &a.body)
}

/// What `GET /v1/me` needs, as tables a lean Worker would keep: tenants by host (with their
/// members' roles by subject) and verified tokens by their text.
struct Lean {
    tenants: HashMap<String, LeanTenant>,
    tokens: HashMap<String, Claims>,
    /// Requests by client address in the current window.
    by_address: RefCell<HashMap<String, Window>>,
    /// The limits as edgefront's recorded `RateLimit-Policy` states them (edgefront counts by
    /// address only when it has the client's address, which the benchmark does not send).
    address_limit: Option<Limit>,
    tenant_limit: Limit,
    /// The answer's other headers as the tail of a JSON record (`,"name":"value"…}`).
    headers_tail: String,
}

/// A fixed-window limit: `quota` requests per `window_ms`.
#[derive(Clone, Copy)]
struct Limit {
    quota: u32,
    window_ms: u64,
}

/// A counter's window: when it started and what it has counted.
#[derive(Clone, Copy, Default)]
struct Window {
    start_ms: u64,
    count: u32,
}

impl Window {
    /// Counts one request at `now_ms`: the requests left in the window and the seconds until it
    /// resets, or `None` when the request is over the limit.
    fn hit(&mut self, limit: Limit, now_ms: u64) -> Option<(u32, u64)> {
        if now_ms.saturating_sub(self.start_ms) >= limit.window_ms {
            *self = Window {
                start_ms: now_ms,
                count: 0,
            };
        }
        self.count = self.count.saturating_add(1);
        let reset = self
            .start_ms
            .saturating_add(limit.window_ms)
            .saturating_sub(now_ms)
            .div_ceil(1000);
        limit
            .quota
            .checked_sub(self.count)
            .map(|left| (left, reset))
    }
}

struct LeanTenant {
    id: String,
    name: String,
    slug: String,
    tier: String,
    /// Subject → (role, user id).
    members: HashMap<String, (String, String)>,
    /// Requests on this tenant in the current window.
    window: Cell<Window>,
}

struct Claims {
    subject: String,
    email: Option<String>,
    email_verified: bool,
    issuer: String,
    name: Option<String>,
    roles: Vec<String>,
    platform_admin: bool,
    expires_at: u64,
    token_use: Option<String>,
}

#[derive(Deserialize)]
struct LeanSetting {
    /// The tenant's host without a port (`acme.localhost`).
    host: String,
    /// The token the benchmark sends (without `Bearer `).
    token: String,
}

/// The headers written per request, in front of the recorded rest.
const ID_HEADER: &str = "x-request-id";
const LIMIT_HEADER: &str = "ratelimit";
const POLICY_HEADER: &str = "ratelimit-policy";

/// `policy`'s limit in a `RateLimit-Policy` value (`"ip";q=600;w=60, "tenant";q=6000;w=60`).
fn limit_of(policies: &str, policy: &str) -> Option<Limit> {
    let item = policies
        .split(',')
        .map(str::trim)
        .find(|i| i.starts_with(&format!("\"{policy}\";")))?;
    let param = |name: &str| {
        item.split(';')
            .find_map(|p| p.trim().strip_prefix(name))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(Limit {
        quota: u32::try_from(param("q=")?).ok()?,
        window_ms: param("w=")?.checked_mul(1000)?,
    })
}

impl Lean {
    /// The tables, filled from edgefront's recorded `/v1/me` answer for `setting`'s host and
    /// token (what edgefront's caches hold after its first request).
    fn new(setting: &str, answers: &HashMap<String, Ready>) -> Result<Self, String> {
        let setting: LeanSetting = serde_json::from_str(setting).map_err(|e| e.to_string())?;
        let me = answers.get("/v1/me").ok_or("no recorded /v1/me answer")?;
        let doc: serde_json::Value = serde_json::from_slice(&me.body).map_err(|e| e.to_string())?;
        let text = |v: &serde_json::Value, k: &str| -> Result<String, String> {
            v.get(k)
                .and_then(|s| s.as_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("/v1/me's answer has no text {k}"))
        };
        let opt = |k: &str| doc.get(k).and_then(|s| s.as_str()).map(str::to_owned);
        let tenant = doc.get("tenant").ok_or("/v1/me's answer has no tenant")?;
        let subject = text(&doc, "subject")?;
        let t = LeanTenant {
            id: text(tenant, "id")?,
            name: text(tenant, "name")?,
            slug: text(tenant, "slug")?,
            tier: text(tenant, "tier")?,
            members: HashMap::from([(
                subject.clone(),
                (text(&doc, "role")?, text(&doc, "user_id")?),
            )]),
            window: Cell::default(),
        };
        let claims = Claims {
            subject,
            email: opt("email"),
            email_verified: doc.get("email_verified").and_then(|b| b.as_bool()) == Some(true),
            issuer: text(&doc, "issuer")?,
            name: opt("name"),
            roles: doc
                .get("roles")
                .and_then(|r| r.as_array())
                .map(|r| {
                    r.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            platform_admin: doc.get("platform_admin").and_then(|b| b.as_bool()) == Some(true),
            expires_at: doc
                .get("token_expires_at")
                .and_then(|n| n.as_u64())
                .ok_or("/v1/me's answer has no token_expires_at")?,
            token_use: opt("token_use"),
        };
        // The recorded record without the two headers written per request, which go first.
        let mut record: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&me.headers_json).map_err(|e| e.to_string())?;
        record.remove(ID_HEADER);
        record.remove(LIMIT_HEADER);
        let policies = record
            .get(POLICY_HEADER)
            .and_then(|p| p.as_str())
            .ok_or("/v1/me's answer has no RateLimit-Policy")?;
        let address_limit = limit_of(policies, "ip");
        let tenant_limit =
            limit_of(policies, "tenant").ok_or("no tenant limit in RateLimit-Policy")?;
        let rest = serde_json::Value::Object(record).to_string();
        let headers_tail = match rest.strip_prefix('{') {
            Some("}") | None => "}".to_owned(),
            Some(members) => format!(",{members}"),
        };
        Ok(Self {
            tenants: HashMap::from([(setting.host, t)]),
            tokens: HashMap::from([(setting.token, claims)]),
            by_address: RefCell::default(),
            address_limit,
            tenant_limit,
            headers_tail,
        })
    }

    /// `GET /v1/me` done here; any other request replayed.
    fn serve(
        &self,
        req: &web_sys::Request,
        answers: &HashMap<String, Ready>,
    ) -> Result<web_sys::Response, JsValue> {
        let head = read_head(req);
        let mut lines = head.split('\n');
        let method = lines.next().unwrap_or("");
        let url = lines.next().unwrap_or("");
        let path = url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("/");
        if method != "GET" || path != "/v1/me" {
            return replay_read(&head, answers);
        }
        let (mut host, mut authorization, mut address) = (None, None, "");
        for line in lines {
            match line.split_once(',') {
                Some(("host", v)) => host = Some(v),
                Some(("authorization", v)) => authorization = Some(v),
                Some(("cf-connecting-ip", v)) => address = v,
                _ => {}
            }
        }
        let host = host.map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name));
        let Some(tenant) = host.and_then(|h| self.tenants.get(h)) else {
            return empty(404);
        };
        let now_ms = js_sys::Date::now() as u64;
        let token = authorization.and_then(|a| {
            a.get(..7)
                .filter(|s| s.eq_ignore_ascii_case("bearer "))
                .and(a.get(7..))
        });
        let Some(claims) = token.and_then(|t| self.tokens.get(t)) else {
            return empty(401);
        };
        if claims.expires_at.saturating_mul(1000) <= now_ms {
            return empty(401);
        }
        let Some((role, user_id)) = tenant.members.get(&claims.subject) else {
            return empty(403);
        };
        // Each counter counts the request; the tighter one is reported.
        let by_address = match self.address_limit.filter(|_| !address.is_empty()) {
            None => Some(None),
            Some(limit) => {
                let mut counters = self.by_address.borrow_mut();
                match counters.get_mut(address) {
                    Some(w) => w.hit(limit, now_ms),
                    None => counters
                        .entry(address.to_owned())
                        .or_default()
                        .hit(limit, now_ms),
                }
                .map(Some)
            }
        };
        let mut window = tenant.window.get();
        let by_tenant = window.hit(self.tenant_limit, now_ms);
        tenant.window.set(window);
        let (Some(a), Some(t)) = (by_address, by_tenant) else {
            return empty(429);
        };
        let (policy, (left, reset)) = match a {
            Some(a) if a.0 <= t.0 => ("ip", a),
            _ => ("tenant", t),
        };
        let mut id = [0u8; 16];
        getrandom::getrandom(&mut id).map_err(|e| JsValue::from_str(&e.to_string()))?;
        let mut headers = String::with_capacity(96 + self.headers_tail.len());
        headers.push_str("{\"");
        headers.push_str(ID_HEADER);
        headers.push_str("\":\"");
        edgefront_core::obs::hex_into(&mut headers, &id);
        let mut n = itoa::Buffer::new();
        for part in [
            "\",\"",
            LIMIT_HEADER,
            "\":\"\\\"",
            policy,
            "\\\";r=",
            n.format(left),
            ";t=",
        ] {
            headers.push_str(part);
        }
        headers.push_str(n.format(reset));
        headers.push('"');
        headers.push_str(&self.headers_tail);
        let body = answer(claims, tenant, role, user_id);
        respond(200, &headers, &body)
    }
}

/// `/v1/me`'s document, as edgefront writes it (core's `me::answer`).
fn answer(p: &Claims, t: &LeanTenant, role: &str, user_id: &str) -> Vec<u8> {
    use edgefront_core::json_key;
    let mut o = edgefront_core::json_writer::JsonObject::with_capacity(640);
    o.opt_str(json_key!("email"), p.email.as_deref());
    o.bool(json_key!("email_verified"), p.email_verified);
    o.str(json_key!("issuer"), &p.issuer);
    o.str(json_key!("membership"), "membership");
    o.opt_str(json_key!("name"), p.name.as_deref());
    o.bool(json_key!("platform_admin"), p.platform_admin);
    o.str(json_key!("role"), role);
    o.strs(json_key!("roles"), p.roles.iter().map(String::as_str));
    o.str(json_key!("subject"), &p.subject);
    o.open(json_key!("tenant"));
    o.str(json_key!("id"), &t.id);
    o.str(json_key!("name"), &t.name);
    o.str(json_key!("slug"), &t.slug);
    o.str(json_key!("tier"), &t.tier);
    o.close();
    o.num(json_key!("token_expires_at"), p.expires_at);
    o.opt_str(json_key!("token_use"), p.token_use.as_deref());
    o.str(json_key!("user_id"), user_id);
    o.finish_bytes()
}

/// An answer with no body.
fn empty(status: u16) -> Result<web_sys::Response, JsValue> {
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    web_sys::Response::new_with_opt_str_and_init(None, &init)
}
