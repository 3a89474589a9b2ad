// Abuse resistance (issue 13, items 5 and 6), black-box on both runtimes: attacker-chosen Origin
// headers cost no lookup (CORS is decided from the tenant's own record, which carries its
// verified custom domains), and no database or upstream text reaches a client, whether the
// input is crafted (cursors, query parameters) or the database itself fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { adminDb as superuser, api, assertProblem, bearer, createTenant, edge, onHost, runtime, sqlStats, stack } from './stack.mjs';

const port = new URL(process.env.EDGEFRONT_BASE_URL).port;

/** Adds `hostname` to `tenant`'s domains, verified or not (before the edge caches the tenant). */
async function addDomain(tenant, hostname, verified) {
  await superuser.query(
    `INSERT INTO tenant_domains (hostname, tenant_id, verified_at) VALUES ($1, $2::uuid, ${verified ? 'now()' : 'NULL'})`,
    [hostname, tenant.id],
  );
}

/** Runs `fn(i)` for i in 0..n, `width` at a time. */
async function pool(n, width, fn) {
  let next = 0;
  const worker = async () => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: width }, worker));
}

test('2,000 distinct Origin headers on a tenant route cost no tenant lookup', async () => {
  const t = await createTenant({ prefix: 'orig' });
  const warm = await api(t, '/v1/storefront');
  assert.equal(warm.status, 200);
  const n = 2000;
  const before = await sqlStats();
  const leaked = [];
  await pool(n, 25, async (i) => {
    // Subdomains of the base domain (each was a lookup by slug), custom-looking hosts (each a
    // lookup by domain), and a few shapes besides.
    const origin = [
      `http://o${i}-${t.id.slice(0, 8)}.${stack.base_domain}:${port}`,
      `https://shop${i}.attacker.example`,
      `https://o${i}.${stack.base_domain}`,
      `https://${'x'.repeat(40)}${i}.example`,
    ][i % 4];
    const res = await api(t, '/v1/storefront', { headers: { origin } });
    assert.equal(res.status, 200, origin);
    if (res.headers.get('access-control-allow-origin') !== null) leaked.push(origin);
  });
  const after = await sqlStats();
  const cost = after.sql_requests - before.sql_requests;
  assert.deepEqual(leaked, [], 'a stranger origin was allowed');
  if (runtime === 'workers') {
    // The isolate has the tenant cached: no Origin may add a round trip.
    assert.equal(cost, 0, `${n} requests with distinct Origins cost ${cost} SQL round trips`);
  } else {
    // Spin under wasmtime serve: a fresh instance per request looks its tenant up once (the
    // storefront profile itself needs no SQL); an Origin must add nothing to that.
    assert.ok(cost <= n, `${n} requests with distinct Origins cost ${cost} SQL round trips`);
  }
  console.log(`# ${runtime}: ${n} distinct Origins cost ${cost} SQL round trips`);
});

test("a tenant's verified custom domains are its origins; unverified and foreign ones are not", async () => {
  const tag = randomUUID().slice(0, 8);
  const [a, b] = [await createTenant({ prefix: 'cors-a' }), await createTenant({ prefix: 'cors-b' })];
  const mine = `shop-${tag}.a.example`;
  const pending = `pending-${tag}.a.example`;
  const foreign = `shop-${tag}.b.example`;
  await addDomain(a, mine, true);
  await addDomain(a, pending, false);
  await addDomain(b, foreign, true);
  const acao = async (res) => {
    assert.ok([200, 204].includes(res.status), `${res.status} ${await res.text()}`);
    return res.headers.get('access-control-allow-origin');
  };
  for (const origin of [`https://${mine}`, `https://${mine}:8443`, `http://${a.slug}.${stack.base_domain}:${port}`]) {
    assert.equal(await acao(await api(a, '/v1/storefront', { headers: { origin } })), origin);
    const pre = await api(a, '/v1/storefront/catalog', {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'GET' },
    });
    assert.equal(pre.status, 204, origin);
    assert.equal(pre.headers.get('access-control-allow-origin'), origin);
  }
  // Served on the custom domain itself, the tenant's subdomain is still its own origin.
  const own = `http://${a.slug}.${stack.base_domain}:${port}`;
  assert.equal(await acao(await onHost(mine, '/v1/storefront', { headers: { origin: own } })), own);
  for (const origin of [
    `https://${pending}`,
    `https://${foreign}`,
    `http://${b.slug}.${stack.base_domain}:${port}`,
    `http://${mine}`,
    `https://evil.${mine}`,
  ]) {
    assert.equal(await acao(await api(a, '/v1/storefront', { headers: { origin } })), null, origin);
    const pre = await api(a, '/v1/storefront/catalog', {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'GET' },
    });
    await assertProblem(pre, 403, 'origin_not_allowed');
  }
  // Removing the domain takes it out of the cached record at once.
  const owner = await bearer(a, 'owner');
  const del = await api(a, `/v1/tenant/domains/${mine}`, { method: 'DELETE', auth: owner });
  assert.ok([200, 204].includes(del.status), `${del.status} ${await del.text()}`);
  if (runtime === 'workers') {
    // (On Spin every request is a fresh instance: there is no cache to invalidate.)
    assert.equal(await acao(await api(a, '/v1/storefront', { headers: { origin: `https://${mine}` } })), null);
  }
});

/** A pager cursor as the edge writes them: base64url of ["c1", sort, key, id]. */
const cursor = (...items) => Buffer.from(JSON.stringify(['c1', ...items])).toString('base64url');

/** Asserts `res` is a 4xx problem whose text names nothing of the database. */
async function refusedCleanly(res, what) {
  const text = await res.text();
  assert.ok(res.status >= 400 && res.status < 500, `${what}: ${res.status} ${text}`);
  assert.equal(res.headers.get('content-type'), 'application/problem+json', what);
  for (const leak of [/syntax/i, /postgres/i, /database/i, /sqlstate/i, /relation/i, /out of range/i, /timestamp with/i, /::/]) {
    assert.doesNotMatch(text, leak, `${what}: ${text}`);
  }
  return JSON.parse(text);
}

test('crafted cursors and query parameters on public routes are 4xx without database text', async () => {
  const t = await createTenant({ prefix: 'craft' });
  const id = randomUUID();
  const cases = [
    // Year 0 exists for chrono, not for Postgres.
    ['year-0 timestamp', `?cursor=${cursor('-created_at', '0000-01-01T00:00:00.000000Z', id)}`],
    ['a date that is not one', `?cursor=${cursor('-created_at', '2023-02-30T00:00:00.000000Z', id)}`],
    ['a timestamp for a price', `?sort=price&cursor=${cursor('price', '2023-01-01T00:00:00.000000Z', id)}`],
    ['NaN price', `?sort=price&cursor=${cursor('price', 'NaN', id)}`],
    ['exponent price', `?sort=price&cursor=${cursor('price', '1e400', id)}`],
    ['huge price', `?sort=price&cursor=${cursor('price', '9'.repeat(40), id)}`],
    ['another sort', `?sort=name&cursor=${cursor('-created_at', '2023-01-01T00:00:00.000000Z', id)}`],
    ['a bad id', `?cursor=${cursor('-created_at', '2023-01-01T00:00:00.000000Z', "x'; select 1 --")}`],
    ['a NUL in a name', `?sort=name&cursor=${cursor('name', 'a\u0000b', id)}`],
    ['not base64', '?cursor=%%%'],
    ['not JSON', `?cursor=${Buffer.from('{"c1"').toString('base64url')}`],
    ['too long', `?cursor=${'A'.repeat(5000)}`],
    ['limit words', '?limit=abc'],
    ['limit huge', '?limit=99999999999999999999'],
    ['limit negative', '?limit=-1'],
    ['an unknown sort', '?sort=price;drop'],
    ['a NUL in q', '?q=a%00b'],
    ['a long category', `?category=${'c'.repeat(500)}`],
  ];
  for (const [what, query] of cases) {
    const res = await api(t, `/v1/storefront/catalog${query}`);
    const body = await refusedCleanly(res, what);
    assert.equal(body.status, 400, `${what}: ${JSON.stringify(body)}`);
  }
  // Ids in paths that are no ids.
  for (const path of ['/v1/storefront/catalog/not-a-uuid', `/v1/storefront/orders/${'9'.repeat(60)}`, "/v1/storefront/catalog/'%3Bselect"]) {
    await refusedCleanly(await api(t, path), path);
  }
  // A cursor in the right shape still pages (nothing above refused a good one).
  const ok = await api(t, `/v1/storefront/catalog?cursor=${cursor('-created_at', '2023-01-01T00:00:00.000000Z', id)}`);
  assert.equal(ok.status, 200, await ok.text());
});

test("a failing database statement is a problem document without the database's message", async () => {
  const t = await createTenant({ prefix: 'dberr' });
  const secret = `edgefront-internal-${randomUUID()}`;
  const fn = `test_fail_visit_${t.id.replaceAll('-', '')}`;
  // A trigger that fails this tenant's visits only, with a message nobody outside may read.
  await superuser.query(`CREATE FUNCTION public.${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION '${secret} in relation "visits"' USING ERRCODE = 'XX001'; END $$`);
  await superuser.query(`CREATE TRIGGER ${fn} BEFORE INSERT ON public.visits FOR EACH ROW
    WHEN (NEW.tenant_id = '${t.id}'::uuid) EXECUTE FUNCTION public.${fn}()`);
  try {
    const res = await api(t, '/v1/storefront/visits', { method: 'POST', body: { path: '/' } });
    const body = await assertProblem(res, 502, 'upstream_unavailable');
    const raw = JSON.stringify(body);
    assert.ok(!raw.includes(secret), raw);
    assert.doesNotMatch(body.detail, /visits|XX001|relation|trigger/, raw);
    assert.ok(!raw.includes('XX001'), raw);
    assert.equal(body.detail, 'The database did not answer as expected.');
    // Another tenant's visits are untouched.
    const other = await createTenant({ prefix: 'dbok' });
    const fine = await api(other, '/v1/storefront/visits', { method: 'POST', body: { path: '/' } });
    assert.ok(fine.status < 300, `${fine.status} ${await fine.text()}`);
  } finally {
    await superuser.query(`DROP TRIGGER IF EXISTS ${fn} ON public.visits`);
    await superuser.query(`DROP FUNCTION IF EXISTS public.${fn}()`);
  }
});

test('a malformed Host or a hostile Origin on an unknown tenant is a clean 4xx', async () => {
  const res = await edge('/v1/storefront', {
    host: `nobody-${randomUUID().slice(0, 8)}.${stack.base_domain}:${port}`,
    headers: { origin: 'https://evil.example' },
  });
  const body = await refusedCleanly(res, 'unknown tenant');
  assert.equal(body.code, 'tenant_not_found');
});
