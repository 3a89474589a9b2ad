// V8 CPU profile of a worker under load, from a plain `workerd serve` (not `wrangler dev`:
// attaching the Profiler there stops its workerd). Usage (BENCHMARKS.md, "Profiling on workerd"):
//
//   workerd serve edge.capnp --inspector-addr=127.0.0.1:9239 &
//   node --experimental-websocket bench/profile.mjs ws://127.0.0.1:9239/main \
//        http://127.0.0.1:18788/healthz demo.localhost 5
//   PROFILE_BEARER=<token> node --experimental-websocket bench/profile.mjs … /v1/me …
//   PROFILE_BEARER=<token> PROFILE_BODY='{…}' node … bench/profile.mjs … /v1/uploads …
//
// Samples every 50 µs while wrk (1 thread, 2 connections) loads the URL, then prints the
// functions by self time, in percent of all samples ("(idle)": the isolate waited). Serve the
// bundle with the wasm that keeps its name section
// (target/wasm32-unknown-unknown/release/edgefront_worker.names.wasm, under the bundle's
// file name) to see Rust function names.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [inspector, url, host = 'demo.localhost', seconds = '5'] = process.argv.slice(2);
if (!inspector || !url) {
  console.error('usage: profile.mjs <inspector ws url> <target url> [host] [seconds]');
  process.exit(2);
}

const ws = new WebSocket(inspector);
let nextId = 0;
const pending = new Map();
const send = (method, params = {}) =>
  new Promise((resolve, reject) => {
    const id = ++nextId;
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ id, method, params }));
  });
ws.onmessage = (event) => {
  const msg = JSON.parse(event.data);
  const waiter = msg.id && pending.get(msg.id);
  if (!waiter) return;
  pending.delete(msg.id);
  if (msg.error) waiter.reject(new Error(JSON.stringify(msg.error)));
  else waiter.resolve(msg.result);
};
await new Promise((resolve, reject) => {
  ws.onopen = resolve;
  ws.onerror = reject;
});

await send('Profiler.enable');
await send('Profiler.setSamplingInterval', { interval: 50 });
await send('Profiler.start');
// PROFILE_BEARER: a token for authenticated routes (`cargo xtask token`, or
// wasm-tests/tools/mint.mjs), sent as `Authorization: Bearer …`.
const auth = process.env.PROFILE_BEARER ? ['-H', `Authorization: Bearer ${process.env.PROFILE_BEARER}`] : [];
// PROFILE_BODY: a JSON body, sent with PROFILE_METHOD (default POST) through a wrk script.
const script = [];
if (process.env.PROFILE_BODY) {
  const file = join(mkdtempSync(join(tmpdir(), 'profile-')), 'body.lua');
  const method = process.env.PROFILE_METHOD ?? 'POST';
  writeFileSync(
    file,
    `wrk.method = ${JSON.stringify(method)}\nwrk.body = ${JSON.stringify(process.env.PROFILE_BODY)}\n` +
      'wrk.headers["Content-Type"] = "application/json"\n',
  );
  script.push('-s', file);
}
execFileSync('wrk', ['-t1', '-c2', `-d${seconds}s`, '-H', `Host: ${host}`, ...auth, ...script, url], {
  stdio: 'inherit',
});
const { profile } = await send('Profiler.stop');
// PROFILE_OUT: where to keep the profile (a .cpuprofile: Chrome DevTools opens it).
if (process.env.PROFILE_OUT) writeFileSync(process.env.PROFILE_OUT, JSON.stringify(profile));

const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const selfSamples = new Map();
for (const id of profile.samples) {
  // An anonymous builtin (no name, no script) is charged to its nearest named caller, marked
  // with one `<` per level climbed: `<(anonymous) shim.js:664` is what the import at line 664
  // of the shim called (console.log there).
  let node = id;
  let frame = nodes.get(node).callFrame;
  let climbed = '';
  while (frame.functionName === '' && !frame.url && parent.has(node)) {
    node = parent.get(node);
    frame = nodes.get(node).callFrame;
    climbed += '<';
  }
  const file = frame.url.split('/').pop();
  const key = `${climbed}${frame.functionName || '(anonymous)'}${file ? ` ${file}:${frame.lineNumber + 1}` : ''}`;
  selfSamples.set(key, (selfSamples.get(key) ?? 0) + 1);
}
const total = profile.samples.length;
console.log(`\n${total} samples; self time, % of samples:`);
for (const [key, n] of [...selfSamples].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
  console.log(`${((100 * n) / total).toFixed(1).padStart(5)}  ${key}`);
}
ws.close();
