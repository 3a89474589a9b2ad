// JWT verification at the edge, black-box: tokens and keys come from `jose`, the JWKS from the
// dev issuer's server (which counts fetches). Same expectations on every runtime. The tenants
// pool runs membership mode (roles from our database: valid tokens are registered first); the
// `claims` pool keeps the token's tenant and role claims as the authority.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, rmSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, importJWK, base64url } from 'jose';
import { edge, assertProblem, stack, runtime, registerUser } from './stack.mjs';
import { sign, cognitoClaims } from '../tools/mint.mjs';
import { makeKey } from '../tools/devkeys.mjs';

const claims = (opts) => cognitoClaims(stack, 'tenants', { tenant: 'demo', ...opts });
/** Claims of a user registered as `role` of `tenant` (membership mode: the database decides). */
async function member(opts = {}) {
  const c = claims(opts);
  const role = opts.role ?? 'member';
  const userId = await registerUser({ sub: c.sub, email: c.email ?? null, tenant: opts.tenant ?? 'demo', role });
  return { c, userId };
}
const me = (token, tenant = 'demo') =>
  edge('/v1/me', { tenant, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });

async function assert401(res, code) {
  const body = await assertProblem(res, 401, code);
  assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer /);
  return body;
}

async function fetches(issuer) {
  const res = await fetch(stack.auth.stats_url);
  return (await res.json())[issuer] ?? 0;
}

for (const alg of ['RS256', 'ES256', 'EdDSA']) {
  test(`a valid ${alg} ID token is accepted and /v1/me describes the caller`, async () => {
    const { c, userId } = await member({ role: 'admin' });
    const res = await me(await sign(stack, 'tenants', c, { alg }));
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.user_id, userId);
    assert.equal(body.subject, c.sub);
    assert.equal(body.email, c.email);
    assert.equal(body.role, 'admin');
    assert.deepEqual(body.roles, ['admin']);
    assert.equal(body.tenant.slug, 'demo');
    assert.equal(body.token_expires_at, c.exp);
    assert.equal(body.platform_admin, false);
  });
}

test('a valid access token (client_id, token_use=access) is accepted', async () => {
  const { c } = await member({ tokenUse: 'access' });
  const res = await me(await sign(stack, 'tenants', c));
  assert.equal(res.status, 200, await res.text());
});

test('no token → 401 with a Bearer challenge and no error code', async () => {
  const res = await me(undefined);
  await assertProblem(res, 401, 'missing_token');
  assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="edgefront"');
});

const now = () => Math.floor(Date.now() / 1000);
for (const [name, extra, code] of [
  ['expired', { exp: now() - 120 }, 'expired'],
  ['not yet valid (nbf in the future)', { nbf: now() + 600 }, 'not_yet_valid'],
  ['issued far in the future', { iat: now() + 3600 }, 'issued_in_future'],
  ['from an unknown issuer', { iss: 'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_evil' }, 'wrong_issuer'],
  ['for another app client (aud)', { aud: 'someone-else' }, 'wrong_audience'],
  ['with an unknown token_use', { token_use: 'refresh' }, 'wrong_token_use'],
]) {
  test(`a token ${name} → 401 ${code}`, async () => {
    const body = await assert401(await me(await sign(stack, 'tenants', claims({ extra }))), code);
    assert.ok(!JSON.stringify(body).includes('eyJ'), 'the token must never be echoed');
  });
}

test('an access token for another client_id → 401 wrong_audience', async () => {
  const c = claims({ tokenUse: 'access', extra: { client_id: 'someone-else' } });
  await assert401(await me(await sign(stack, 'tenants', c)), 'wrong_audience');
});

test('expiry within the leeway is still accepted', async () => {
  const { c } = await member({ extra: { exp: now() - 20 } });
  const res = await me(await sign(stack, 'tenants', c));
  assert.equal(res.status, 200, await res.text());
});

test('alg "none" is rejected', async () => {
  const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }));
  const payload = base64url.encode(JSON.stringify(claims()));
  await assert401(await me(`${header}.${payload}.`), 'unsupported_algorithm');
});

test('HS256 signed with the RSA public key as the secret is rejected', async () => {
  const pub = JSON.parse(readFileSync(stack.auth.issuers.tenants.public_jwks_file, 'utf8')).keys.find((k) => k.alg === 'RS256');
  const secret = new TextEncoder().encode(JSON.stringify(pub));
  const token = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: pub.kid }).sign(secret);
  await assert401(await me(token), 'unsupported_algorithm');
});

test('a header alg that does not match the key (ES256 header, RSA kid) is rejected', async () => {
  const priv = JSON.parse(readFileSync(stack.auth.issuers.tenants.private_jwks, 'utf8')).keys;
  const rsa = priv.find((k) => k.alg === 'RS256');
  const ec = priv.find((k) => k.alg === 'ES256');
  const token = await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: rsa.kid }).sign(await importJWK(ec, 'ES256'));
  await assert401(await me(token), 'algorithm_mismatch');
});

test('a tampered payload fails the signature check', async () => {
  const [h, , s] = (await sign(stack, 'tenants', claims({ role: 'member' }))).split('.');
  const forged = base64url.encode(JSON.stringify(claims({ role: 'owner' })));
  await assert401(await me(`${h}.${forged}.${s}`), 'bad_signature');
});

for (const [name, token, code] of [
  ['garbage', 'not-a-jwt', 'malformed_token'],
  ['truncated', 'eyJhbGciOiJSUzI1NiJ9.eyJ', 'malformed_token'],
  ['oversized', 'a'.repeat(9000), 'token_too_large'],
]) {
  test(`a ${name} token → 401 ${code}`, async () => {
    await assert401(await me(token), code);
  });
}

test('a member of tenant A on tenant B\'s host → 403 not_a_member', async () => {
  const { c } = await member({ tenant: 'acme', role: 'owner' });
  assert.equal((await me(await sign(stack, 'tenants', c), 'acme')).status, 200);
  await assertProblem(await me(await sign(stack, 'tenants', c), 'demo'), 403, 'not_a_member');
});

test('a valid token of nobody we know → 403 not_a_member, whatever its claims say', async () => {
  await assertProblem(await me(await sign(stack, 'tenants', claims({ role: 'owner' }))), 403, 'not_a_member');
});

// Claims mode: the token's tenant and role claims decide.
const legacy = (opts) => cognitoClaims(stack, 'claims', { tenant: 'demo', ...opts });

test('claims mode: the token\'s tenant and role claims grant access without a membership', async () => {
  const c = legacy({ role: 'admin' });
  const body = await (await me(await sign(stack, 'claims', c))).json();
  assert.equal(body.role, 'admin', JSON.stringify(body));
  assert.equal(body.membership, 'claims');
  assert.equal(body.subject, c.sub);
});

test('claims mode: a token of tenant A on tenant B\'s host → 403 tenant_mismatch', async () => {
  const res = await me(await sign(stack, 'claims', legacy({ tenant: 'acme' })), 'demo');
  await assertProblem(res, 403, 'tenant_mismatch');
});

test('claims mode: a token without a tenant claim → 403 tenant_mismatch', async () => {
  const c = legacy();
  delete c['custom:tenant_id'];
  await assertProblem(await me(await sign(stack, 'claims', c)), 403, 'tenant_mismatch');
});

test('a platform-admin from the platform issuer may act on any tenant', async () => {
  for (const tenant of ['demo', 'acme']) {
    const c = cognitoClaims(stack, 'platform', { role: 'platform-admin' });
    const res = await me(await sign(stack, 'platform', c), tenant);
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.platform_admin, true);
    assert.equal(body.tenant.slug, tenant);
  }
});

test('the platform-admin group means nothing in a tenant pool token', async () => {
  const res = await me(await sign(stack, 'tenants', claims({ tenant: 'acme', role: 'platform-admin' })), 'demo');
  await assertProblem(res, 403, 'not_a_member');
  const legacyRes = await me(await sign(stack, 'claims', legacy({ tenant: 'acme', role: 'platform-admin' })), 'demo');
  await assertProblem(legacyRes, 403, 'tenant_mismatch');
});

test('key rotation: a new kid is accepted after one refetch; unknown kids cost at most one fetch per window', async () => {
  const issuer = `rotation-${runtime}`;
  const file = join(stack.auth.jwks_dir, `${issuer}.json`);
  const key = await makeKey('RS256');
  const c = cognitoClaims(stack, issuer, { tenant: 'demo' });
  await registerUser({ issuer, sub: c.sub, email: c.email, tenant: 'demo', role: 'member' });
  const rotated = await sign(stack, issuer, c, { jwk: key.private });
  // Publish the new key, then present a token signed with it: one refetch, then accepted.
  writeFileSync(file, JSON.stringify({ keys: [key.public] }));
  const before = await fetches(issuer);
  const res = await me(rotated);
  assert.equal(res.status, 200, await res.text());
  const afterRotation = await fetches(issuer);
  assert.ok(afterRotation - before <= 1, `rotation cost ${afterRotation - before} fetches`);
  // A flood of unknown kids within the penalty window: at most one more fetch in total.
  const stranger = await makeKey('RS256');
  // Sequential, so on Workers every request meets the same isolate.
  const flood = [];
  for (let i = 0; i < 15; i++) {
    const jwk = { ...stranger.private, kid: `unknown-${i}-${Date.now()}` };
    flood.push((await me(await sign(stack, issuer, c, { jwk }))).status);
  }
  assert.deepEqual(flood, Array(15).fill(401));
  const afterFlood = await fetches(issuer);
  if (runtime === 'workers') {
    // The isolate's cache holds the penalty window, so the flood costs at most one fetch.
    assert.ok(afterFlood - afterRotation <= 1, `15 unknown kids caused ${afterFlood - afterRotation} fetches`);
  } else {
    // Spin under wasmtime serve: a fresh instance per request and no key-value store, so no
    // cache at all; still never more than one fetch per request.
    assert.ok(afterFlood - afterRotation <= 15, `15 unknown kids caused ${afterFlood - afterRotation} fetches`);
  }
  // JWKS endpoint down: with a warm cache (Workers) known keys keep working; with none (Spin
  // here) credentials cannot be checked, and the answer says so.
  writeFileSync(join(stack.auth.jwks_dir, `${issuer}.down`), 'down');
  try {
    const again = await me(await sign(stack, issuer, { ...c, jti: 'again' }, { jwk: key.private }));
    if (runtime === 'workers') assert.equal(again.status, 200, await again.text());
    else await assertProblem(again, 503, 'jwks_unavailable');
  } finally {
    rmSync(join(stack.auth.jwks_dir, `${issuer}.down`), { force: true });
  }
});

test('a key set that never answers: 503 jwks_unavailable once the fetch deadline (3 s) passes, not a hung request', async () => {
  // The stalled issuer has no keys in any cache, so the token's kid sends the edge to its key
  // set, which takes the request and says nothing (its `.hang` file). On Workers the deadline
  // is the runtime's own (`AbortSignal.timeout` on the fetch), on Spin core's timer.
  const issuer = `stalled-${runtime}`;
  const hang = join(stack.auth.jwks_dir, `${issuer}.hang`);
  const key = await makeKey('RS256');
  const c = cognitoClaims(stack, issuer, { tenant: 'demo' });
  const token = await sign(stack, issuer, c, { jwk: key.private });
  writeFileSync(hang, 'hang');
  try {
    const before = await fetches(issuer);
    const started = Date.now();
    const res = await me(token);
    const took = Date.now() - started;
    await assertProblem(res, 503, 'jwks_unavailable');
    assert.ok(took >= 2_500, `answered after ${took} ms: before the deadline, so not by it`);
    assert.ok(took < 9_000, `answered after ${took} ms: the deadline did not end the call`);
    assert.ok((await fetches(issuer)) > before, 'the key set was never asked');
  } finally {
    rmSync(hang, { force: true });
  }
});
