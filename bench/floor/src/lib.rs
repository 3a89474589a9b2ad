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
//! - **panic** (`FLOOR_PANIC` set): bare, except that `/panic` panics. `cargo xtask test` uses
//!   it to check that the Worker entry edgefront shares (edge/worker/src/entry.js) recovers:
//!   the next request is answered by a fresh instance of the module.

use std::cell::OnceCell;
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
    Panic,
}

fn mode(env: &JsValue) -> Result<Mode, JsValue> {
    if js_sys::Reflect::has(env, &"FLOOR_PANIC".into())? {
        return Ok(Mode::Panic);
    }
    Ok(answers(env)?.map_or(Mode::Bare, Mode::Replay))
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
            let _ = cell.set(mode(&env)?);
        }
        match cell.get() {
            Some(Mode::Replay(answers)) => replay(&req, answers),
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
    let head = WANTED.with(|wanted| {
        edgefront_core::request_headers::head_text(|buf| request_head_into(req, wanted, buf))
    });
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

/// An answer with no body.
fn empty(status: u16) -> Result<web_sys::Response, JsValue> {
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    web_sys::Response::new_with_opt_str_and_init(None, &init)
}
