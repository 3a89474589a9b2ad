// Tenant resolution from the Host header: subdomains, custom domains, reserved and malformed
// names, and tenants that are suspended or deleted. Every refusal is problem+json with a code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { edge, assertProblem, stack, runtime, bearer as memberBearer } from './stack.mjs';

const port = new URL(process.env.EDGEFRONT_BASE_URL).port;
// A registered member (membership mode): the token alone would grant nothing.
const bearer = (tenant) => memberBearer(tenant, 'member');

test('a tenant subdomain resolves to its tenant', async () => {
  const res = await edge('/v1/me', { tenant: 'demo', headers: { authorization: await bearer('demo') } });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.tenant.slug, 'demo');
  assert.equal(body.tenant.id, stack.tenants.find((t) => t.slug === 'demo').id);
});

test('a custom domain resolves through tenant_domains', async () => {
  const [domain, slug] = Object.entries(stack.custom_domains)[0];
  const res = await edge('/v1/me', { host: `${domain}:${port}`, headers: { authorization: await bearer(slug) } });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.tenant.slug, slug);
});

test('the Host is case- and port-insensitive', async () => {
  const res = await edge('/v1/me', { host: `DEMO.LocalHost:${port}`, headers: { authorization: await bearer('demo') } });
  assert.equal(res.status, 200);
});

for (const [name, host, status, code] of [
  ['an unknown subdomain', 'nope', 404, 'tenant_not_found'],
  ['an unknown custom domain', 'shop.unknown.test', 404, 'tenant_not_found'],
  ['a reserved name', 'www', 404, 'reserved_host'],
  ['another reserved name', 'api', 404, 'reserved_host'],
  ['the bare base domain', '', 404, 'reserved_host'],
  ['a suspended tenant', 'frozen', 403, 'tenant_suspended'],
  ['a deleted tenant', 'gone', 410, 'tenant_deleted'],
  ['a malformed label', 'bad_name', 400, 'invalid_host'],
  ['a nested subdomain', 'a.demo', 400, 'invalid_host'],
]) {
  test(`${name} is refused with ${status} ${code}`, async () => {
    const h = host.includes('.') && !host.startsWith('a.') ? host : [host, stack.base_domain].filter(Boolean).join('.');
    const res = await edge('/v1/me', { host: `${h}:${port}`, headers: { authorization: await bearer('demo') } });
    await assertProblem(res, status, code);
  });
}

test('X-Forwarded-Host is not trusted by default', async () => {
  const res = await edge('/v1/me', {
    tenant: 'nope',
    headers: { 'x-forwarded-host': `demo.${stack.base_domain}`, authorization: await bearer('demo') },
  });
  await assertProblem(res, 404, 'tenant_not_found');
});

test('tenant lookups are cached: repeated requests keep answering', async () => {
  const auth = await bearer('acme');
  const statuses = await Promise.all(Array.from({ length: 8 }, () => edge('/v1/me', { tenant: 'acme', headers: { authorization: auth } }).then((r) => r.status)));
  assert.deepEqual(statuses, Array(8).fill(200));
});

test('a hot tenant costs no SQL round trip (the tenant record is cached at the edge)', async () => {
  const sqlRequests = async () => (await (await fetch(stack.origin.stats_url)).json()).sql_requests;
  const auth = await bearer('acme');
  const warm = await edge('/v1/me', { tenant: 'acme', headers: { authorization: auth } });
  assert.equal(warm.status, 200);
  const before = await sqlRequests();
  for (let i = 0; i < 10; i++) {
    const res = await edge('/v1/me', { tenant: 'acme', headers: { authorization: auth } });
    assert.equal(res.status, 200);
  }
  const cost = (await sqlRequests()) - before;
  if (runtime === 'workers') {
    // The isolate keeps the tenant record and the caller's role cached.
    assert.ok(cost === 0, `10 requests for a hot tenant cost ${cost} SQL round trips`);
  } else {
    // Spin under wasmtime serve: a fresh instance per request and no key-value store (under
    // `spin up` Spin's store holds them), so each request looks up the tenant and the caller,
    // one query each, never more.
    assert.ok(cost <= 20, `10 requests cost ${cost} SQL round trips`);
  }
});
