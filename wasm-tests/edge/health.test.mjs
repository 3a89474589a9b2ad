// Walking skeleton: liveness, deep health through the real SQL proxy and the real
// SigV4-verifying S3, and problem+json for everything the API does not serve.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { agent, edge, assertProblem, runtime, stack } from './stack.mjs';

test('GET /healthz reports ok, the version and which runtime answered', async () => {
  const res = await edge('/healthz', { tenant: 'demo' });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const body = await res.json();
  assert.equal(body.status, 'ok');
  assert.equal(body.runtime, runtime);
  assert.match(body.version, /^\d+\.\d+\.\d+/);
  assert.equal(body.checks, undefined, 'a shallow check must not touch dependencies');
});

// The suite talks to the runtime's own port (on Workers, workerd's: wrangler dev's proxy in front
// of it reports any failed upstream fetch as its own 503). Developers use wrangler's port: it
// must serve the same edge, tenant Host headers and bodies included.
test("the port developers use (wrangler dev's on Workers) serves the same edge", async () => {
  const { url } = stack.runtimes[runtime];
  const port = new URL(url).port;
  const call = (method, path, body) =>
    new Promise((resolve, reject) => {
      const headers = { host: `demo.${stack.base_domain}:${port}` };
      if (body !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = Buffer.byteLength(body);
      }
      const u = new URL(path, url);
      const req = http.request({ hostname: u.hostname, port, path, method, headers, agent, timeout: 15_000 }, (res) => {
        const cs = [];
        res.on('data', (c) => cs.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(cs).toString('utf8') }));
      });
      req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${path}`)));
      req.on('error', reject);
      req.end(body);
    });
  const health = await call('GET', '/healthz');
  assert.equal(health.status, 200, health.body);
  assert.equal(JSON.parse(health.body).runtime, runtime);
  const shop = await call('GET', '/v1/storefront');
  assert.equal(shop.status, 200, shop.body);
  const direct = await edge('/v1/storefront', { tenant: 'demo' });
  assert.deepEqual(JSON.parse(shop.body), await direct.json());
  const visit = await call('POST', '/v1/storefront/visits', JSON.stringify({ path: '/from-the-dev-port' }));
  assert.equal(visit.status, 201, visit.body);
});

// The deep check is for operators (OPERATOR_TOKEN); wasm-tests/edge/abuse-health.test.mjs proves
// the refusals.
const operator = { authorization: `Bearer ${stack.operator_token}` };

test('GET /healthz?deep=1 runs SELECT 1 through the proxy and a signed HEAD on the bucket', async () => {
  const res = await edge('/healthz?deep=1', { tenant: 'demo', headers: operator });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.runtime, runtime);
  assert.equal(body.checks.database.status, 'ok');
  assert.equal(body.checks.storage.status, 'ok');
  for (const c of Object.values(body.checks)) {
    assert.ok(Number.isInteger(c.latency_ms) && c.latency_ms >= 0);
  }
});

test('the local S3 rejects an unsigned HEAD of the bucket, so the deep check proves signing', async () => {
  const res = await fetch(`${stack.s3.endpoint}/${stack.s3.bucket}`, { method: 'HEAD' });
  assert.ok(res.status === 403 || res.status === 401, `unsigned HEAD got ${res.status}`);
});

test('unknown paths are 404 problem+json that never echo the query string', async () => {
  const res = await edge('/no/such/thing?X-Amz-Signature=secret', { tenant: 'demo' });
  const body = await assertProblem(res, 404, 'not_found');
  assert.equal(body.instance, '/no/such/thing');
  assert.ok(!JSON.stringify(body).includes('secret'));
});

test('a wrong method is 405 problem+json with an Allow header', async () => {
  const res = await edge('/healthz', { tenant: 'demo', method: 'POST', body: '{}' });
  await assertProblem(res, 405, 'method_not_allowed');
  assert.equal(res.headers.get('allow'), 'GET, HEAD');
});

test('HEAD /healthz answers like GET without a body', async () => {
  const res = await edge('/healthz', { tenant: 'demo', method: 'HEAD' });
  assert.equal(res.status, 200);
  assert.equal((await res.arrayBuffer()).byteLength, 0);
});

test('concurrent deep checks all succeed (no shared state between requests)', async () => {
  const results = await Promise.all(
    Array.from({ length: 10 }, () => edge('/healthz?deep=1', { tenant: 'acme', headers: operator }).then((r) => r.status)),
  );
  assert.deepEqual(results, Array(10).fill(200));
});
