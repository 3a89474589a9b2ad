// The Worker's entry point, shared by edge/worker (entry.mjs) and bench/floor (entry.mjs).
//
// worker-build bundles wasm-bindgen's glue with its shim (build/index.js), whose default export
// is a `WorkerEntrypoint` class behind a `Proxy`. For every request the runtime constructs that
// class, and the shim's hooks allocate a fresh handler object, a `Proxy` around the instance
// and another around its `fetch`. Those exist for panic recovery, which wasm-bindgen's glue
// now does by itself: worker-build runs it with `--experimental-reset-state-function
// --force-enable-abort-handler`, so every call into wasm first checks whether the module
// trapped and, once the `worker` crate's abort hook has asked for it, instantiates the module
// afresh. Durable Object classes still go through the shim (their instances outlive a
// request and hold wasm state, which is what its instance check is for).
//
// So the fetch handler is served from a plain module export that calls the handler
// worker-build generated (`Entrypoint.prototype.fetch`: the wasm export, given `env` and
// `ctx`) directly. What this saves is measured in BENCHMARKS.md (change 43); that the next
// request after a panic is served is tested by `cargo xtask test` (wasm-tests/entry/).
//
// The `worker` crate's panic hook also raises `criticalError` in its init state, which tells
// the shim to re-instantiate the module. By then the glue has already scheduled that (a panic
// aborts, the abort traps, the trap runs the abort hook), and it happens on the next call into
// wasm. So the flag is lowered here, as the shim lowers it, or the shim's Durable Object
// wrappers would instantiate the module a second time.
export function entry(shim) {
  const handler = shim?.prototype?.fetch;
  if (typeof handler !== "function") {
    // A worker-build release that changed its shim: fail at startup, not per request.
    throw new Error("worker-build's bundle exports no Entrypoint with a fetch handler");
  }
  const state = globalThis.__worker_init_state;
  return {
    fetch(request, env, ctx) {
      if (state?.criticalError) {
        state.criticalError = false;
      }
      return handler.call({ env, ctx }, request);
    },
  };
}
