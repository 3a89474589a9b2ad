// The Worker entry (edge/worker/src/entry.js) after a Rust panic: the request that panicked
// fails, and the next one is served by a fresh instance of the module. Run by `cargo xtask
// test` against bench/floor's bundle, which serves through the same entry and panics on
// `/panic` when `FLOOR_PANIC` is set. Needs EDGEFRONT_FLOOR_BUNDLE (wrangler's dry-run output
// for bench/floor) and EDGEFRONT_WORKERD (the workerd binary).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, copyFileSync, writeFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const bundle = process.env.EDGEFRONT_FLOOR_BUNDLE;
const workerd = process.env.EDGEFRONT_WORKERD;

let proc;
let base;
let dir;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function config(modules, addr) {
  const lines = modules.map(
    ([name, kind]) => `    (name = ${JSON.stringify(name)}, ${kind} = embed ${JSON.stringify(name)}),`,
  );
  return `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .worker) ],
  sockets = [ (name = "http", address = ${JSON.stringify(addr)}, http = (), service = "main") ],
);
const worker :Workerd.Worker = (
  modules = [
${lines.join("\n")}
  ],
  bindings = [ (name = "FLOOR_PANIC", text = "1") ],
  compatibilityDate = "2026-04-20",
);
`;
}

async function get(path) {
  const r = await fetch(base + path, { signal: AbortSignal.timeout(10_000) });
  return { status: r.status, body: await r.text() };
}

before(async () => {
  assert.ok(bundle && workerd, "EDGEFRONT_FLOOR_BUNDLE and EDGEFRONT_WORKERD must be set");
  dir = mkdtempSync(join(tmpdir(), "edgefront-entry-"));
  const modules = [];
  for (const f of readdirSync(bundle)) {
    if (f.endsWith(".js") || f.endsWith(".mjs")) modules.push([f, "esModule"]);
    else if (f.endsWith(".wasm")) modules.push([f, "wasm"]);
    else continue;
    copyFileSync(join(bundle, f), join(dir, f));
  }
  // workerd's main module is the first.
  modules.sort((a, b) => (a[1] === b[1] ? 0 : a[1] === "esModule" ? -1 : 1));
  assert.equal(modules.filter(([, k]) => k === "esModule").length, 1, `one JS module in ${bundle}`);
  const addr = `127.0.0.1:${await freePort()}`;
  writeFileSync(join(dir, "serve.capnp"), config(modules, addr));
  proc = spawn(workerd, ["serve", "serve.capnp"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  proc.stdout.on("data", (d) => (log += d));
  proc.stderr.on("data", (d) => (log += d));
  proc.log = () => log;
  base = `http://${addr}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await get("/healthz");
      break;
    } catch (e) {
      if (Date.now() > deadline || proc.exitCode !== null) {
        throw new Error(`workerd did not start: ${e}\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
});

after(() => {
  proc?.kill("SIGTERM");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("the entry serves the module's answer", async () => {
  const r = await get("/healthz");
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { status: "ok" });
});

test("a panic fails its own request only; the next requests get a fresh module", async () => {
  const panicked = await get("/panic");
  assert.equal(panicked.status, 500, "the panicking request fails");
  for (let i = 0; i < 3; i++) {
    const r = await get("/healthz");
    assert.equal(r.status, 200, `request ${i + 1} after the panic: ${r.body}\n${proc.log()}`);
    assert.deepEqual(JSON.parse(r.body), { status: "ok" });
  }
  // It panics again, and recovers again: the fresh instance runs the same entry.
  assert.equal((await get("/panic")).status, 500);
  assert.equal((await get("/healthz")).status, 200);
  assert.match(proc.log(), /Rust panic: [\s\S]*\/panic was requested/, "the panic is logged");
});
