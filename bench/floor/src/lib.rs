//! The floor of a Rust Worker, for `cargo xtask bench --peer`: built like edge/worker (the same
//! `worker` crate, worker-build, its shim and profile) and exporting `fetch` the way
//! edge/worker does, but doing nothing: every request gets `{"status":"ok"}` at once. What a
//! wasm Worker pays before any work of its own (the shim, the call into wasm, a `Response`
//! built from wasm) is this worker's cost over the hello-world JS worker.

use wasm_bindgen::prelude::*;

// Linked for what it exports to the shim (its init state), as in edge/worker.
use worker as _;

/// Answers every request with edgefront's `/healthz` body.
#[wasm_bindgen(js_name = fetch)]
pub fn fetch_handler(
    _req: web_sys::Request,
    _env: JsValue,
    _ctx: JsValue,
) -> Result<web_sys::Response, JsValue> {
    let headers = web_sys::Headers::new()?;
    headers.set("content-type", "application/json")?;
    let init = web_sys::ResponseInit::new();
    init.set_status(200);
    init.set_headers(&headers);
    web_sys::Response::new_with_opt_str_and_init(Some(r#"{"status":"ok"}"#), &init)
}
