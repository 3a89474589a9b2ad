// Walking skeleton: liveness, deep health through the real SQL proxy and the real
// SigV4-verifying S3, and problem+json for everything the API does not serve.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { edge, assertProblem, runtime, stack } from './stack.mjs';

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
