// Observability (issue 14): a request id on every response, in every problem document, on every
// outbound call and in the SQL proxy's log; exactly one JSON log line per request (written
// through the log port: Workers' console.log, Spin's stdout) with the route template, tenant,
// tier, user, SQL batches, caches, outbound calls and bytes; an `error` line with an upstream's
// own words; and, with tracing on (the test stack runs an OTLP receiver), one trace per request
// with a child span per outbound call.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import http from 'node:http';
import { agent, api, assertProblem, baseUrl, bearer, createTenant, edge, runtime, stack } from './stack.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const GENERATED = /^[0-9a-f]{32}$/;

/** Lines of the runtime's own log output (wrangler's worker console file, or wasmtime's stdout). */
function runtimeLines() {
  const files = readdirSync(stack.logs).filter((f) =>
    runtime === 'workers' ? /^wrangler-.*\.log$/.test(f) : f === 'spin.log',
  );
  // `wasmtime serve` prefixes a component's output with `stdout [N] :: `.
  return files
    .flatMap((f) => readFileSync(join(stack.logs, f), 'utf8').split('\n'))
    .map((l) => (l.includes('{') ? l.slice(l.indexOf('{')) : l));
}

/** The JSON log lines that name `id`, once at least `min` of them are there (lines are written
 * after the response, so they may trail it a little). */
async function logLines(id, { min = 1, msg } = {}) {
  let found = [];
  for (let i = 0; i < 50; i++) {
    found = runtimeLines()
      .filter((l) => l.startsWith('{') && l.includes(id))
      .map((l) => JSON.parse(l))
      .filter((l) => l.request_id === id && (!msg || l.msg === msg));
    if (found.length >= min) return found;
    await sleep(100);
  }
  assert.fail(`no ${msg ?? ''} log line for request ${id} (found ${found.length})`);
}

async function requestLine(id) {
  const lines = await logLines(id, { msg: 'request' });
  // Give a duplicate the chance to show up before asserting there is exactly one.
  await sleep(200);
  const again = (await logLines(id, { msg: 'request' })).length;
  assert.equal(again, 1, `exactly one request line for ${id}`);
  return lines[0];
}

const FIELDS = [
  'ts', 'level', 'msg', 'request_id', 'runtime', 'method', 'route', 'status', 'code', 'duration_ms',
  'tenant_id', 'tier', 'user_id', 'sql_batches', 'cache', 'calls', 'bytes_out',
];

function assertShape(line) {
  for (const f of FIELDS) assert.ok(f in line, `log line lacks ${f}: ${JSON.stringify(line)}`);
  assert.equal(line.level, 'info');
  assert.equal(line.runtime, runtime);
  assert.match(line.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(Number.isInteger(line.duration_ms) && line.duration_ms >= 0);
  for (const c of ['tenant', 'jwks', 'membership', 'token']) {
    assert.ok(Number.isInteger(line.cache[c].hits) && Number.isInteger(line.cache[c].misses), c);
  }
  for (const call of line.calls) {
    assert.ok(['sql', 's3', 'jwks', 'provider', 'ratelimit', 'dns', 'other'].includes(call.kind), call.kind);
    assert.ok(Number.isInteger(call.duration_ms));
    assert.ok(['ok', 'error', 'timeout', 'failed'].includes(call.outcome));
    // Hosts only: never a path or query (presigned signatures live there).
    assert.doesNotMatch(call.host, /[/?]/);
  }
}

test('every response carries X-Request-Id, and a problem document names the same id', async () => {
  const cases = [
    edge('/healthz', { tenant: 'demo' }),
    api('demo', '/v1/storefront'),
    api('demo', '/v1/catalog'), // 401
    api('demo', '/no/such/route'), // 404
    api('demo', '/v1/catalog', { method: 'PUT', body: {} }), // 405
    api('demo', '/v1/catalog', { method: 'POST', body: 'x'.repeat(20_000) }), // 413
    api('no-such-shop-here', '/v1/storefront'), // unknown tenant
    api('demo', '/v1/catalog', { method: 'OPTIONS', headers: { origin: 'http://demo.localhost', 'access-control-request-method': 'GET' } }),
  ];
  const ids = new Set();
  for (const res of await Promise.all(cases)) {
    const id = res.headers.get('x-request-id');
    assert.match(id ?? '', GENERATED, `status ${res.status}`);
    ids.add(id);
    if (res.headers.get('content-type') === 'application/problem+json') {
      assert.equal((await res.json()).request_id, id);
    }
  }
  assert.equal(ids.size, cases.length, 'each request has its own id');
});

test('a trusted incoming X-Request-Id is kept; a malformed one is replaced', async () => {
  const kept = await api('demo', '/v1/catalog', { headers: { 'x-request-id': 'lb-7f3a.9c1e:42' } });
  assert.equal(kept.headers.get('x-request-id'), 'lb-7f3a.9c1e:42');
  assert.equal((await kept.json()).request_id, 'lb-7f3a.9c1e:42');
  const long = 'a'.repeat(200);
  const replaced = await api('demo', '/v1/storefront', { headers: { 'x-request-id': long } });
  assert.match(replaced.headers.get('x-request-id'), GENERATED);
  const quoted = await api('demo', '/v1/storefront', { headers: { 'x-request-id': 'a"b' } });
  assert.match(quoted.headers.get('x-request-id'), GENERATED);
});

test('an authenticated write logs one line with every field, and the SQL proxy logs the same id', async () => {
  const t = await createTenant({ tier: 'premium' });
  const auth = await bearer(t, 'admin');
  const res = await api(t, '/v1/catalog', { method: 'POST', auth, body: { sku: 'OBS-1', name: 'Observed', price: '3.00' } });
  assert.equal(res.status, 201, await res.text());
  const id = res.headers.get('x-request-id');
  const body = await res.arrayBuffer();
  const line = await requestLine(id);
  assertShape(line);
  assert.equal(line.method, 'POST');
  assert.equal(line.route, '/v1/catalog');
  assert.equal(line.status, 201);
  assert.equal(line.code, null);
  assert.equal(line.tenant_id, t.id);
  assert.equal(line.tier, 'premium');
  assert.match(line.user_id, /^[0-9a-f-]{36}$/);
  assert.ok(line.sql_batches >= 1);
  assert.equal(line.sql_batches, line.calls.filter((c) => c.kind === 'sql').length);
  assert.ok(line.calls.some((c) => c.kind === 'sql' && c.status === 200 && c.outcome === 'ok'));
  assert.equal(line.bytes_out, body.byteLength);
  // The proxy's log names the id with each batch it ran for this request.
  const proxyLog = readFileSync(join(stack.logs, 'origin.log'), 'utf8');
  const batches = proxyLog.split('\n').filter((l) => l.includes(`request_id="${id}"`) || l.includes(`request_id=${id}`));
  assert.ok(batches.length >= 1, `the proxy logged request ${id}`);
  assert.ok(batches.every((l) => /elapsed_ms=\d+/.test(l) && /status=200/.test(l)), batches.join('\n'));
});

test('a public read logs its route template, no user, and its cache use', async () => {
  const t = await createTenant();
  const created = await api(t, '/v1/catalog', {
    method: 'POST', auth: await bearer(t, 'admin'), body: { sku: 'OBS-2', name: 'Public', price: '1.00', status: 'active' },
  });
  const item = await created.json();
  assert.equal(item.status, 'active', JSON.stringify(item));
  await api(t, '/v1/storefront'); // the tenant is now cached on this instance (Workers)
  const res = await api(t, `/v1/storefront/catalog/${item.id}`);
  assert.equal(res.status, 200);
  const line = await requestLine(res.headers.get('x-request-id'));
  assertShape(line);
  assert.equal(line.route, '/v1/storefront/catalog/{id}');
  assert.equal(line.user_id, null);
  assert.equal(line.tenant_id, t.id);
  assert.equal(line.cache.tenant.hits + line.cache.tenant.misses, 1, JSON.stringify(line.cache));
  assert.ok(!JSON.stringify(line).includes(item.id), 'the raw path (with its id) is not logged');
});

test('an error logs its problem code; a failing upstream adds an error line in its own words', async () => {
  const denied = await api('demo', '/v1/catalog', { auth: 'Bearer not-a-token' });
  const line = await requestLine(denied.headers.get('x-request-id'));
  assertShape(line);
  assert.equal(line.status, 401);
  assert.equal(line.code, (await denied.json()).code);
  assert.match(line.code, /token/);
  assert.equal(line.route, '/v1/catalog');
  assert.ok(!JSON.stringify(line).includes('not-a-token'));

  // The mock AI provider fails on "[fail]": the client reads fixed words, the log the provider's.
  const t = await createTenant({ tier: 'premium' });
  const auth = await bearer(t, 'member');
  const fail = await api(t, '/v1/chat', { method: 'POST', auth, body: { message: 'secret prompt [fail]' } });
  const problem = await assertProblem(fail, 502, 'upstream_unavailable');
  const id = fail.headers.get('x-request-id');
  assert.equal(problem.request_id, id);
  assert.doesNotMatch(JSON.stringify(problem), /mock provider is down/);
  const [error] = await logLines(id, { msg: 'upstream error' });
  assert.equal(error.level, 'error');
  assert.equal(error.code, 'upstream_unavailable');
  assert.match(error.error, /500|mock provider is down/);
  const request = await requestLine(id);
  assert.equal(request.status, 502);
  assert.ok(request.calls.some((c) => c.kind === 'provider' && c.status === 500 && c.outcome === 'error'));
  assert.ok(!runtimeLines().some((l) => l.includes('secret prompt')), 'message bodies are never logged');
  // The same id reached the provider and the SQL proxy.
  const ids = await (await fetch(stack.ai.request_ids_url)).json();
  assert.ok(ids.includes(id), 'the provider got the request id');
  const proxyLog = readFileSync(join(stack.logs, 'origin.log'), 'utf8');
  assert.ok(proxyLog.includes(id), 'the proxy logged the request id');
});

test('with tracing on, each request is one trace: a server span and a client span per call', async () => {
  assert.ok(stack.otlp, 'the test stack runs an OTLP receiver');
  const t = await createTenant();
  const res = await api(t, '/v1/storefront/catalog?limit=5');
  assert.equal(res.status, 200);
  const id = res.headers.get('x-request-id');
  let spans = [];
  for (let i = 0; i < 50 && spans.length === 0; i++) {
    const all = (await (await fetch(stack.otlp.spans_url)).json()).spans;
    const root = all.find((s) => s.attributes['edgefront.request_id'] === id);
    spans = root ? all.filter((s) => s.traceId === root.traceId) : [];
    if (spans.length === 0) await sleep(100);
  }
  const roots = spans.filter((s) => !s.parentSpanId);
  assert.equal(roots.length, 1, JSON.stringify(spans));
  const [root] = roots;
  assert.equal(root.kind, 2);
  assert.equal(root.name, 'GET /v1/storefront/catalog');
  assert.equal(root.attributes['http.route'], '/v1/storefront/catalog');
  assert.equal(root.attributes['http.response.status_code'], 200);
  assert.equal(root.attributes['edgefront.tenant_id'], t.id);
  assert.equal(root.resource['service.name'], 'edgefront');
  assert.equal(root.resource['edgefront.runtime'], runtime);
  const children = spans.filter((s) => s.parentSpanId === root.spanId);
  const sql = children.filter((s) => s.attributes['edgefront.call.kind'] === 'sql');
  assert.ok(sql.length >= 1, 'a child span for the SQL batch');
  assert.ok(children.every((s) => s.kind === 3));
  assert.ok(BigInt(sql[0].startTimeUnixNano) >= BigInt(root.startTimeUnixNano));
  assert.ok(BigInt(sql[0].endTimeUnixNano) <= BigInt(root.endTimeUnixNano) + 1_000_000n);
  // Exactly one trace for this request id.
  const all = (await (await fetch(stack.otlp.spans_url)).json()).spans;
  assert.equal(all.filter((s) => s.attributes['edgefront.request_id'] === id).length, 1);
});

/** POSTs a chat turn asking for server-sent events; resolves to {status, id, events}. */
function streamChat(tenant, auth, message) {
  const url = new URL('/v1/chat', baseUrl);
  const payload = JSON.stringify({ message });
  const headers = {
    host: `${tenant.slug}.${stack.base_domain}:${url.port}`,
    'content-type': 'application/json',
    accept: 'text/event-stream',
    'content-length': Buffer.byteLength(payload),
    authorization: auth,
  };
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname: url.hostname, port: url.port, path: '/v1/chat', method: 'POST', headers, timeout: 20_000, agent }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (buf += c));
      res.on('end', () => {
        const events = buf.split('\n\n').filter(Boolean).map((block) => ({
          event: /^event: (.*)$/m.exec(block)?.[1],
          data: JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null'),
        }));
        resolve({ status: res.statusCode, id: res.headers['x-request-id'], events });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(payload);
  });
}

test('a streamed answer that fails mid-way: the error event names the request id, the log its code', async () => {
  const t = await createTenant({ tier: 'premium' });
  const auth = await bearer(t, 'member');
  const res = await streamChat(t, auth, 'tell me more please [error]');
  assert.equal(res.status, 200);
  assert.match(res.id, GENERATED);
  const last = res.events.at(-1);
  assert.equal(last.event, 'error');
  assert.equal(last.data.code, 'upstream_unavailable');
  assert.equal(last.data.request_id, res.id);
  const line = await requestLine(res.id);
  assertShape(line);
  assert.equal(line.status, 200);
  assert.equal(line.code, 'upstream_unavailable');
  assert.equal(line.bytes_out, null, 'a streamed answer has no known size');
  const [error] = await logLines(res.id, { msg: 'upstream error' });
  assert.equal(error.code, 'upstream_unavailable');
});
