// Rate limits (issue 13): per client IP and per tenant, by route class, counted where every
// instance sees the same count (Workers: a Durable Object per key; Spin under wasmtime serve:
// the origin's limiter, RATE_LIMIT_URL). Each test gives its own tenant small limits through
// `settings.limits.rate` (the stack's RATE_LIMITS are far above what the other suites send) and
// its own client address in `cf-connecting-ip`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adminDb as db, api, assertProblem, bearer, createTenant, runtime } from './stack.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let nextIp = 1;
/** A client address no other test (or runtime: they run one after the other) uses. */
const freshIp = () => `203.0.${runtime === 'spin' ? 114 : 113}.${nextIp++}`;

function rateTenant(rate) {
  return createTenant({ prefix: 'rl', settings: { limits: { rate } } });
}

/** `"name";r=N;t=S` → {name, r, t}. */
function parseState(value) {
  const m = /^"([a-z]+)";r=(\d+);t=(\d+)$/.exec(value ?? '');
  assert.ok(m, `RateLimit header ${value}`);
  return { name: m[1], r: Number(m[2]), t: Number(m[3]) };
}

test('an address trips its public-read limit at the configured rate, with the IETF headers, and recovers after Retry-After', async () => {
  const t = await rateTenant({ window_seconds: 4, ip: { public_read: 5 } });
  const ip = freshIp();
  const get = () => api(t, '/v1/storefront', { headers: { 'cf-connecting-ip': ip } });
  for (let i = 0; i < 5; i++) {
    const res = await get();
    assert.equal(res.status, 200, await res.text());
    assert.match(res.headers.get('ratelimit-policy'), /^"ip";q=5;w=4, "tenant";q=\d+;w=4$/);
    const state = parseState(res.headers.get('ratelimit'));
    assert.deepEqual([state.name, state.r], ['ip', 4 - i]);
    assert.ok(state.t >= 1 && state.t <= 8, `t=${state.t}`);
  }
  const refused = await get();
  const problem = await assertProblem(refused, 429, 'rate_limited');
  const retry = Number(refused.headers.get('retry-after'));
  assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 8, `Retry-After ${retry}`);
  assert.equal(problem.retry_after, retry);
  assert.deepEqual(parseState(refused.headers.get('ratelimit')), { name: 'ip', r: 0, t: retry });
  // Refusals are not counted: asking again does not push the wait further out.
  const again = await get();
  assert.equal(again.status, 429);
  assert.ok(Number(again.headers.get('retry-after')) <= retry);
  // Another address on the same storefront is not affected.
  assert.equal((await api(t, '/v1/storefront', { headers: { 'cf-connecting-ip': freshIp() } })).status, 200);
  await sleep(retry * 1000 + 100);
  const recovered = await get();
  assert.equal(recovered.status, 200, await recovered.text());
});

test('a tenant-wide limit holds across addresses, and other tenants are unaffected', async () => {
  const t = await rateTenant({ window_seconds: 30, tenant: { public_read: 4 } });
  const other = await rateTenant({ window_seconds: 30, tenant: { public_read: 4 } });
  const statuses = [];
  for (let i = 0; i < 6; i++) {
    statuses.push((await api(t, '/v1/storefront/catalog', { headers: { 'cf-connecting-ip': freshIp() } })).status);
  }
  assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429]);
  const last = await api(t, '/v1/storefront/catalog', { headers: { 'cf-connecting-ip': freshIp() } });
  assert.equal(parseState(last.headers.get('ratelimit')).name, 'tenant');
  assert.equal((await api(other, '/v1/storefront/catalog', { headers: { 'cf-connecting-ip': freshIp() } })).status, 200);
});

test('20 concurrent visitor writes from one address with a limit of 5: exactly 5 recorded, 15 refused, nothing written for them', async () => {
  const t = await rateTenant({ window_seconds: 60, ip: { visitor_write: 5 } });
  const ip = freshIp();
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      api(t, '/v1/storefront/visits', { method: 'POST', body: { path: `/p/${i}` }, headers: { 'cf-connecting-ip': ip } }),
    ),
  );
  const statuses = results.map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 201).length, 5, statuses.join(','));
  assert.equal(statuses.filter((s) => s === 429).length, 15, statuses.join(','));
  const [{ count }] = await db.query('SELECT count(*)::int AS count FROM visits WHERE tenant_id = $1', [t.id]);
  assert.equal(count, 5);
  // Reads are another class: still served.
  assert.equal((await api(t, '/v1/storefront', { headers: { 'cf-connecting-ip': ip } })).status, 200);
});

test('authenticated routes are limited before credentials are checked, per class', async () => {
  const t = await rateTenant({ window_seconds: 60, tenant: { auth_read: 3, auth_write: 1 } });
  const auth = await bearer(t, 'admin');
  for (let i = 0; i < 3; i++) {
    assert.equal((await api(t, '/v1/catalog', { auth })).status, 200);
  }
  // A valid token is refused once the class is spent, and so is a forged one (no verification).
  await assertProblem(await api(t, '/v1/catalog', { auth }), 429, 'rate_limited');
  await assertProblem(await api(t, '/v1/catalog', { auth: 'Bearer not-a-token' }), 429, 'rate_limited');
  // Writes are their own class.
  const created = await api(t, '/v1/catalog', { method: 'POST', auth, body: { sku: 'rl-1', name: 'One', price: '1.00' } });
  assert.equal(created.status, 201, await created.text());
  const refused = await api(t, '/v1/catalog', { method: 'POST', auth, body: { sku: 'rl-2', name: 'Two', price: '1.00' } });
  await assertProblem(refused, 429, 'rate_limited');
  const [{ count }] = await db.query('SELECT count(*)::int AS count FROM catalog_items WHERE tenant_id = $1', [t.id]);
  assert.equal(count, 1, 'the refused write changed nothing');
});

test('a limit large enough to lease (64 a minute): remaining counts down exactly, and 100 concurrent reads get exactly what is left', async () => {
  // On Workers an isolate spends hits the Durable Object granted it in advance (up to 1/16
  // of a limit); the count must stay exact all the same. Spin asks the origin every time.
  const t = await rateTenant({ window_seconds: 60, tenant: { public_read: 64 } });
  const ip = freshIp();
  const get = () => api(t, '/v1/storefront', { headers: { 'cf-connecting-ip': ip } });
  const seen = [];
  for (let i = 0; i < 12; i++) {
    const res = await get();
    assert.equal(res.status, 200, await res.text());
    seen.push(parseState(res.headers.get('ratelimit')));
  }
  assert.deepEqual(
    seen.map((s) => [s.name, s.r]),
    Array.from({ length: 12 }, (_, i) => ['tenant', 63 - i]),
  );
  const results = await Promise.all(Array.from({ length: 100 }, () => get()));
  const statuses = results.map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 200).length, 52, statuses.join(','));
  assert.equal(statuses.filter((s) => s === 429).length, 48, statuses.join(','));
  await assertProblem(await get(), 429, 'rate_limited');
});
