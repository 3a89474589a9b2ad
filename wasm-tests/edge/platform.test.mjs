// The platform API and onboarding (issue 12), black-box against one runtime: platform admins
// create, list, suspend, reactivate and delete tenants on the platform host
// (`stack.platform_host`); self-service signup. Every lifecycle change shows on the tenant's
// very next request (cached tenant records are invalidated, negative entries included).
// Written against the contract (/work/contract-12.md); fresh tenants and users per test. Where
// the contract is silent, a test says so in a comment marked "(contract silent)".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  api, assertProblem, bearer, createTenant, member, onHost, platform, platformAdmin, runtime, setTxt, signedIn, stack,
  adminDb,
} from './stack.mjs';
import { sign, cognitoClaims } from '../tools/mint.mjs';

const db = adminDb;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/; // public.iso_utc
const rand = () => randomUUID().slice(0, 8);
const newSlug = (prefix = 'p') => `${prefix}-${runtime}-${rand()}`;

async function json(res, status) {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

function roleOf(me) {
  return me.role ?? (Array.isArray(me.roles) ? me.roles[0] : undefined);
}

async function assertFields(res, fields) {
  const p = await assertProblem(res, 400, 'validation_failed');
  assert.ok(Array.isArray(p.errors) && p.errors.length > 0, JSON.stringify(p));
  for (const e of p.errors) assert.ok(e.field && e.code && e.message, `incomplete field error ${JSON.stringify(e)}`);
  const named = p.errors.map((e) => e.field);
  for (const f of fields) assert.ok(named.includes(f), `no error for ${f} in ${JSON.stringify(named)}`);
  return p;
}

/** POST /v1/platform/tenants as a platform admin; checks and returns the 201 document. */
async function platformCreate(body, auth) {
  const res = await platform('/v1/platform/tenants', { method: 'POST', auth: auth ?? (await platformAdmin()), body });
  const doc = await json(res, 201);
  assert.match(doc.tenant.id, UUID);
  assert.equal(doc.tenant.slug, body.slug);
  assert.equal(doc.tenant.name, body.name);
  assert.equal(doc.tenant.tier, body.tier);
  assert.equal(doc.tenant.status, 'active');
  assert.equal(doc.tenant.version, 1);
  assert.equal(doc.tenant.deleted_at, null);
  assert.equal(doc.tenant.members, 0);
  assert.deepEqual(doc.tenant.domains, []);
  assert.match(doc.tenant.created_at, ISO);
  assert.equal(doc.invitation.email, body.owner_email.toLowerCase());
  assert.equal(doc.invitation.role, 'owner');
  assert.equal(doc.invitation.status, 'pending');
  assert.ok(typeof doc.token === 'string' && doc.token.length >= 20);
  assert.equal(doc.accept_path, `/v1/invitations/${doc.token}/accept`);
  return doc;
}

const getPlatformTenant = async (id, auth) => json(await platform(`/v1/platform/tenants/${id}`, { auth: auth ?? (await platformAdmin()) }), 200);
const patchPlatformTenant = async (id, body, headers = {}) =>
  platform(`/v1/platform/tenants/${id}`, { method: 'PATCH', auth: await platformAdmin(), body, headers });
/** PATCH's tenant document (contract silent: the document itself or `{tenant}`). */
const tenantDoc = (body) => (body && body.tenant && body.tenant.slug ? body.tenant : body);

// --- creating tenants ------------------------------------------------------------------

test('a platform admin creates a tenant; its owner\'s first request on the new subdomain works at once', async () => {
  const slug = newSlug();
  const ownerEmail = `Owner-${rand()}@Example.test`;
  const owner = await signedIn({ email: ownerEmail.toLowerCase() });
  // The slug does not exist yet (and that answer may now be cached as a negative entry).
  await assertProblem(await api(slug, '/v1/me', { auth: owner.auth }), 404, 'tenant_not_found');
  await assertProblem(await api(slug, '/v1/storefront'), 404, 'tenant_not_found');

  const created = await platformCreate({ slug, name: 'Fresh Shop', tier: 'premium', owner_email: ownerEmail, settings: { currency: 'GBP' } });
  assert.equal(created.tenant.settings.currency, 'GBP');
  const t = { id: created.tenant.id, slug };

  // The very next requests: the tenant exists, and the owner is in (auto-accepted invitation).
  assert.equal((await json(await api(t, '/v1/storefront'), 200)).name, 'Fresh Shop');
  const me = await json(await api(t, '/v1/me', { auth: owner.auth }), 200);
  assert.equal(roleOf(me), 'owner');
  assert.equal(me.tenant.id, t.id);
  const members = (await json(await api(t, '/v1/members', { auth: owner.auth }), 200)).items;
  assert.deepEqual(members.map((m) => [m.email, m.role]), [[ownerEmail.toLowerCase(), 'owner']]);
  const after = await getPlatformTenant(t.id);
  assert.equal(after.members, 1);
  // The owner may act as one at once.
  assert.equal((await api(t, '/v1/tenant', { method: 'PATCH', auth: owner.auth, body: { name: 'Fresh Shop Ltd' } })).status, 200);
  // The invitation was used.
  const again = await api(t, created.accept_path, { method: 'POST', auth: (await signedIn({ email: ownerEmail.toLowerCase() })).auth });
  await assertProblem(again, 409, 'invitation_used');
});

test('the owner invitation is accepted only for the verified owner address', async () => {
  const ownerEmail = `owner-${rand()}@example.test`;
  const created = await platformCreate({ slug: newSlug(), name: 'Careful Shop', tier: 'basic', owner_email: ownerEmail });
  const t = { id: created.tenant.id, slug: created.tenant.slug };
  const stranger = await signedIn();
  await assertProblem(await api(t, '/v1/me', { auth: stranger.auth }), 403, 'not_a_member');
  const unverified = await signedIn({ email: ownerEmail, emailVerified: false });
  await assertProblem(await api(t, '/v1/me', { auth: unverified.auth }), 403, 'not_a_member');
  assert.equal((await getPlatformTenant(t.id)).members, 0);
  // The same user, once their email is verified, gets in on their next request: a "no role"
  // answer cached for the unverified token does not hold for a verified one.
  const verified = await signedIn({ sub: unverified.sub, email: ownerEmail });
  assert.equal(roleOf(await json(await api(t, '/v1/me', { auth: verified.auth }), 200)), 'owner');
  // A second person with the same address is not let in: the invitation is used.
  await assertProblem(await api(t, '/v1/me', { auth: (await signedIn({ email: ownerEmail })).auth }), 403, 'not_a_member');
});

test('POST /v1/platform/tenants: taken and reserved slugs, invalid bodies; nothing is created', async () => {
  const auth = await platformAdmin();
  const slug = newSlug();
  await platformCreate({ slug, name: 'First', tier: 'basic', owner_email: `a-${rand()}@example.test` }, auth);
  const dup = await platform('/v1/platform/tenants', { method: 'POST', auth, body: { slug, name: 'Second', tier: 'basic', owner_email: `b-${rand()}@example.test` } });
  await assertProblem(dup, 409, 'slug_taken');
  await assertProblem(await platform('/v1/platform/tenants', { method: 'POST', auth, body: { slug: 'demo', name: 'Demo again', tier: 'basic', owner_email: `c-${rand()}@example.test` } }), 409, 'slug_taken');
  for (const reserved of ['admin', 'www', 'api']) {
    await assertFields(await platform('/v1/platform/tenants', { method: 'POST', auth, body: { slug: reserved, name: 'Reserved', tier: 'basic', owner_email: `r-${rand()}@example.test` } }), ['slug']);
  }
  await assertFields(await platform('/v1/platform/tenants', { method: 'POST', auth, body: {} }), ['slug', 'name', 'tier', 'owner_email']);
  const bad = newSlug('Bad_Slug');
  await assertFields(await platform('/v1/platform/tenants', {
    method: 'POST', auth, body: { slug: bad, name: '', tier: 'gold', owner_email: 'nobody', settings: 'x', extra: true },
  }), ['slug', 'name', 'tier', 'owner_email', 'settings', 'extra']);
  await assertProblem(await platform('/v1/platform/tenants', { method: 'POST', auth, body: '{' }), 400, 'validation_failed');
  // Nothing was created by the refusals.
  const listed = await json(await platform(`/v1/platform/tenants?q=${encodeURIComponent(slug)}`, { auth }), 200);
  assert.deepEqual(listed.items.map((t) => t.name), ['First']);
  const [{ n }] = await db.query('SELECT count(*)::int AS n FROM tenants WHERE lower(slug) = lower($1)', [bad]);
  assert.equal(n, 0);
});

test('the platform API is for platform admins on the platform host only', async () => {
  const t = await createTenant();
  const owner = await member(t, 'owner');
  const path = '/v1/platform/tenants';
  // Tenant users, even owners, and tenant-pool tokens claiming the platform-admin group: 403.
  await assertProblem(await platform(path, { auth: owner.auth }), 403, 'platform_admin_required');
  const fakeAdmin = `Bearer ${await sign(stack, 'tenants', cognitoClaims(stack, 'tenants', { role: 'platform-admin' }))}`;
  await assertProblem(await platform(path, { auth: fakeAdmin }), 403, 'platform_admin_required');
  await assertProblem(await platform(`${path}/${t.id}`, { auth: (await signedIn()).auth }), 403, 'platform_admin_required');
  await assertProblem(await platform(path, { method: 'POST', auth: owner.auth, body: { slug: newSlug(), name: 'x', tier: 'basic', owner_email: 'x@example.test' } }), 403, 'platform_admin_required');
  await assertProblem(await platform(`${path}/${t.id}`, { method: 'PATCH', auth: owner.auth, body: { status: 'suspended' } }), 403, 'platform_admin_required');
  await assertProblem(await platform(`${path}/${t.id}`, { method: 'DELETE', auth: owner.auth }), 403, 'platform_admin_required');
  await assertProblem(await platform(path), 401, 'missing_token');
  // Platform routes on a tenant host (or a custom domain) do not exist, even for a platform admin.
  const pa = await platformAdmin();
  await assertProblem(await api(t, path, { auth: pa }), 404, 'not_found');
  await assertProblem(await api(t, `${path}/${t.id}`, { auth: pa }), 404, 'not_found');
  await assertProblem(await api(t, path, { method: 'POST', auth: pa, body: { slug: newSlug(), name: 'x', tier: 'basic', owner_email: 'x@example.test' } }), 404, 'not_found');
  await assertProblem(await api(t, '/v1/signup', { method: 'POST', auth: (await signedIn()).auth, body: { slug: newSlug(), name: 'x' } }), 404, 'not_found');
  const [domain] = Object.keys(stack.custom_domains);
  await assertProblem(await onHost(domain, path, { auth: pa }), 404, 'not_found');
  // The tenant's state was not touched.
  assert.equal((await json(await api(t, '/v1/me', { auth: owner.auth }), 200)).tenant.id, t.id);
});

test('GET /v1/platform/tenants: filters by status, tier and slug/name prefix; pages with a cursor', async () => {
  const auth = await platformAdmin();
  const prefix = `l-${runtime}-${rand()}`;
  const a = await platformCreate({ slug: `${prefix}-a`, name: 'Alpha', tier: 'basic', owner_email: `a-${rand()}@example.test` }, auth);
  const b = await platformCreate({ slug: `${prefix}-b`, name: 'Beta', tier: 'premium', owner_email: `b-${rand()}@example.test` }, auth);
  const c = await platformCreate({ slug: `${prefix}-c`, name: 'Gamma', tier: 'premium', owner_email: `c-${rand()}@example.test` }, auth);
  await json(await patchPlatformTenant(c.tenant.id, { status: 'suspended' }), 200);
  const list = async (query) => {
    const ids = [];
    let cursor = null;
    for (let i = 0; i < 20; i++) {
      const page = await json(await platform(`/v1/platform/tenants?${query}${cursor ? `&cursor=${cursor}` : ''}`, { auth }), 200);
      for (const t of page.items) {
        for (const k of ['id', 'slug', 'name', 'tier', 'status', 'settings', 'created_at', 'updated_at', 'deleted_at', 'version', 'members', 'domains']) {
          assert.ok(k in t, `platform tenant lacks ${k}: ${JSON.stringify(t)}`);
        }
      }
      ids.push(...page.items.map((t) => t.slug));
      cursor = page.next_cursor;
      if (!cursor) return ids.sort();
    }
    throw new Error('pagination did not end');
  };
  assert.deepEqual(await list(`q=${prefix}`), [`${prefix}-a`, `${prefix}-b`, `${prefix}-c`]);
  assert.deepEqual(await list(`q=${prefix}&limit=1`), [`${prefix}-a`, `${prefix}-b`, `${prefix}-c`]);
  const one = await json(await platform(`/v1/platform/tenants?q=${prefix}&limit=1`, { auth }), 200);
  assert.equal(one.items.length, 1);
  assert.ok(one.next_cursor);
  assert.deepEqual(await list(`q=${prefix}&tier=premium`), [`${prefix}-b`, `${prefix}-c`]);
  assert.deepEqual(await list(`q=${prefix}&status=suspended`), [`${prefix}-c`]);
  assert.deepEqual(await list(`q=${prefix}&status=active&tier=basic`), [`${prefix}-a`]);
  // Every tenant, seeded ones too, is the platform's to see.
  assert.deepEqual(await list('q=demo&limit=100').then((s) => s.filter((x) => x === 'demo')), ['demo']);
  await assertFields(await platform('/v1/platform/tenants?status=sleeping', { auth }), ['status']);
  await assertFields(await platform('/v1/platform/tenants?tier=gold', { auth }), ['tier']);
  await assertFields(await platform('/v1/platform/tenants?limit=0', { auth }), ['limit']);
  await assertProblem(await platform(`/v1/platform/tenants/${randomUUID()}`, { auth }), 404, 'not_found');
  assert.equal((await getPlatformTenant(a.tenant.id, auth)).slug, `${prefix}-a`);
  assert.equal((await getPlatformTenant(b.tenant.id, auth)).tier, 'premium');
});

// --- lifecycle -------------------------------------------------------------------------

test('suspend → 403 tenant_suspended, reactivate → 200, delete → 410 tenant_deleted, each on the next request', async () => {
  const t = await createTenant();
  const m = await member(t, 'member');
  const me = () => api(t, '/v1/me', { auth: m.auth });
  // Warm: the record is cached now.
  assert.equal((await me()).status, 200);
  assert.equal((await api(t, '/v1/storefront')).status, 200);

  const suspended = tenantDoc(await json(await patchPlatformTenant(t.id, { status: 'suspended' }), 200));
  assert.equal(suspended.status, 'suspended');
  assert.equal(suspended.version, 2);
  await assertProblem(await me(), 403, 'tenant_suspended');
  await assertProblem(await api(t, '/v1/storefront'), 403, 'tenant_suspended');

  const active = tenantDoc(await json(await patchPlatformTenant(t.id, { status: 'active' }), 200));
  assert.equal(active.status, 'active');
  assert.equal((await me()).status, 200);
  assert.equal((await api(t, '/v1/storefront')).status, 200);

  // Tier and name changes show at once too.
  const renamed = tenantDoc(await json(await patchPlatformTenant(t.id, { name: 'Renamed by platform', tier: 'premium' }), 200));
  assert.equal(renamed.tier, 'premium');
  assert.equal((await json(await api(t, '/v1/storefront'), 200)).name, 'Renamed by platform');
  assert.equal((await json(await me(), 200)).tenant.tier, 'premium');

  // A stale If-Match: 412, nothing changes (contract silent on the header here; ETags are
  // "v{version}" on /v1/tenant, and platform_tenant_update takes a version).
  const stale = await patchPlatformTenant(t.id, { status: 'suspended' }, { 'if-match': '"v1"' });
  await assertProblem(stale, 412, 'precondition_failed');
  assert.equal((await me()).status, 200);

  const del = await platform(`/v1/platform/tenants/${t.id}`, { method: 'DELETE', auth: await platformAdmin() });
  assert.ok([200, 204].includes(del.status), `DELETE: ${del.status} ${await del.text()}`);
  await assertProblem(await me(), 410, 'tenant_deleted');
  await assertProblem(await api(t, '/v1/storefront'), 410, 'tenant_deleted');
  const gone = await getPlatformTenant(t.id);
  assert.equal(gone.status, 'deleted');
  assert.match(gone.deleted_at, ISO);
  // Deleting again keeps the first deletion time.
  const del2 = await platform(`/v1/platform/tenants/${t.id}`, { method: 'DELETE', auth: await platformAdmin() });
  assert.ok([200, 204].includes(del2.status), `DELETE again: ${del2.status}`);
  assert.equal((await getPlatformTenant(t.id)).deleted_at, gone.deleted_at);
  // Restored within the grace period: active again, deleted_at cleared.
  const restored = tenantDoc(await json(await patchPlatformTenant(t.id, { status: 'active' }), 200));
  assert.equal(restored.status, 'active');
  assert.equal(restored.deleted_at, null);
  assert.equal((await me()).status, 200);
  await assertProblem(await platform(`/v1/platform/tenants/${randomUUID()}`, { method: 'DELETE', auth: await platformAdmin() }), 404, 'not_found');
  await assertProblem(await patchPlatformTenant(randomUUID(), { status: 'active' }), 404, 'not_found');
});

test('suspending reaches the tenant\'s verified custom domains too', async () => {
  const t = await createTenant({ tier: 'premium' });
  const owner = await member(t, 'owner');
  const hostname = `sus-${runtime}-${rand()}.example.test`;
  const d = await json(await api(t, '/v1/tenant/domains', { method: 'POST', auth: owner.auth, body: { hostname } }), 201);
  await setTxt(d.verification.name, [d.verification.value]);
  await json(await api(t, `/v1/tenant/domains/${hostname}/verify`, { method: 'POST', auth: owner.auth }), 200);
  assert.equal((await onHost(hostname, '/v1/storefront')).status, 200);
  const platformDoc = await getPlatformTenant(t.id);
  assert.deepEqual(platformDoc.domains.map((x) => [x.hostname, x.status]), [[hostname, 'verified']]);
  await json(await patchPlatformTenant(t.id, { status: 'suspended' }), 200);
  await assertProblem(await onHost(hostname, '/v1/storefront'), 403, 'tenant_suspended');
  const del = await platform(`/v1/platform/tenants/${t.id}`, { method: 'DELETE', auth: await platformAdmin() });
  assert.ok([200, 204].includes(del.status));
  await assertProblem(await onHost(hostname, '/v1/storefront'), 410, 'tenant_deleted');
  await setTxt(d.verification.name, []);
});

test('PATCH /v1/platform/tenants/{id}: invalid fields are named and nothing changes', async () => {
  const t = await createTenant();
  await assertFields(await patchPlatformTenant(t.id, { status: 'sleeping', tier: 'gold', name: '' }), ['status', 'tier', 'name']);
  // `deleted` is reached through DELETE only (contract: status is active|suspended).
  await assertFields(await patchPlatformTenant(t.id, { status: 'deleted' }), ['status']);
  await assertFields(await patchPlatformTenant(t.id, { slug: 'renamed' }), ['slug']);
  const doc = await getPlatformTenant(t.id);
  assert.equal(doc.status, 'active');
  assert.equal(doc.tier, 'basic');
  assert.equal(doc.version, 1);
  const bad = await platform('/v1/platform/tenants/not-a-uuid', { auth: await platformAdmin() });
  assert.ok([400, 404].includes(bad.status), `a malformed id: ${bad.status}`);
});

// --- signup ----------------------------------------------------------------------------

test('POST /v1/signup creates a basic tenant owned by the caller, usable at once', async () => {
  const user = await signedIn();
  const slug = newSlug('s');
  await assertProblem(await api(slug, '/v1/storefront'), 404, 'tenant_not_found');
  const res = await platform('/v1/signup', { method: 'POST', auth: user.auth, body: { slug, name: 'My Own Shop' } });
  const body = await json(res, 201);
  assert.equal(body.tenant.slug, slug);
  assert.equal(body.tenant.tier, 'basic');
  assert.equal(body.tenant.status, 'active');
  assert.equal(body.tenant.name, 'My Own Shop');
  assert.match(body.tenant.id, UUID);
  const t = { id: body.tenant.id, slug };
  assert.equal((await json(await api(t, '/v1/storefront'), 200)).name, 'My Own Shop');
  const me = await json(await api(t, '/v1/me', { auth: user.auth }), 200);
  assert.equal(roleOf(me), 'owner');
  const members = (await json(await api(t, '/v1/members', { auth: user.auth }), 200)).items;
  assert.deepEqual(members.map((m) => [m.email, m.role]), [[user.email, 'owner']]);

  // A second signup by the same person: 409, nothing created.
  const again = newSlug('s');
  await assertProblem(await platform('/v1/signup', { method: 'POST', auth: user.auth, body: { slug: again, name: 'Another' } }), 409, 'already_member');
  await assertProblem(await api(again, '/v1/storefront'), 404, 'tenant_not_found');
  // Someone else, same slug: taken.
  await assertProblem(await platform('/v1/signup', { method: 'POST', auth: (await signedIn()).auth, body: { slug, name: 'Copycat' } }), 409, 'slug_taken');
});

test('POST /v1/signup: members of a tenant, reserved slugs, bad bodies and anonymous callers are refused', async () => {
  // Already a member somewhere.
  const existing = await bearer(await createTenant(), 'member');
  await assertProblem(await platform('/v1/signup', { method: 'POST', auth: existing, body: { slug: newSlug('s'), name: 'x' } }), 409, 'already_member');
  const user = await signedIn();
  for (const slug of ['admin', 'www']) {
    await assertFields(await platform('/v1/signup', { method: 'POST', auth: user.auth, body: { slug, name: 'Reserved' } }), ['slug']);
  }
  await assertFields(await platform('/v1/signup', { method: 'POST', auth: user.auth, body: {} }), ['slug', 'name']);
  await assertFields(await platform('/v1/signup', { method: 'POST', auth: user.auth, body: { slug: 'Not_A_Slug', name: '  ' } }), ['slug', 'name']);
  await assertFields(await platform('/v1/signup', { method: 'POST', auth: user.auth, body: { slug: `${'x'.repeat(64)}`, name: 'Long' } }), ['slug']);
  await assertFields(await platform('/v1/signup', { method: 'POST', auth: user.auth, body: { slug: newSlug('s'), name: 'x', tier: 'enterprise' } }), ['tier']);
  await assertProblem(await platform('/v1/signup', { method: 'POST', body: { slug: newSlug('s'), name: 'x' } }), 401, 'missing_token');
  // After every refusal the user can still sign up once.
  const slug = newSlug('s');
  assert.equal((await platform('/v1/signup', { method: 'POST', auth: user.auth, body: { slug, name: 'Finally' } })).status, 201);
});

test('two signups by one user at once: exactly one tenant', async () => {
  const user = await signedIn();
  const slugs = [newSlug('s'), newSlug('s'), newSlug('s')];
  const results = await Promise.all(slugs.map((slug) => platform('/v1/signup', { method: 'POST', auth: user.auth, body: { slug, name: 'Race' } })));
  const statuses = results.map((r) => r.status).sort();
  assert.deepEqual(statuses, [201, 409, 409], `statuses ${statuses}`);
  for (const r of results.filter((x) => x.status === 409)) await assertProblem(r, 409, 'already_member');
});

// --- purge -----------------------------------------------------------------------------

test('POST /v1/platform/purge: a deleted tenant past its grace loses its objects, then its rows', async () => {
  const t = await createTenant();
  const owner = await member(t, 'owner');
  const pa = await platformAdmin();
  // An uploaded file: an object under "<tenant id>/" in S3.
  const png = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex');
  const up = await json(await api(t, '/v1/uploads', {
    method: 'POST', auth: owner.auth, body: { filename: 'doomed.png', content_type: 'image/png', size: png.length },
  }), 201);
  assert.ok(up.file.key.startsWith(`${t.id}/`), up.file.key);
  const put = await fetch(up.upload.put.url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: png });
  assert.equal(put.status, 200, await put.text());
  const done = await json(await api(t, `/v1/uploads/${up.file.id}/complete`, { method: 'POST', auth: owner.auth }), 200);
  assert.equal((await fetch(done.download.url)).status, 200);

  // Only platform admins, only on the platform host; an active tenant is never a candidate.
  await assertProblem(await platform('/v1/platform/purge?grace_days=0', { method: 'POST', auth: owner.auth }), 403, 'platform_admin_required');
  await assertProblem(await api(t, '/v1/platform/purge?grace_days=0', { method: 'POST', auth: pa }), 404, 'not_found');
  await assertFields(await platform('/v1/platform/purge?grace_days=-1', { method: 'POST', auth: pa }), ['grace_days']);
  await assertFields(await platform('/v1/platform/purge?limit=0', { method: 'POST', auth: pa }), ['limit']);
  const idle = await json(await platform('/v1/platform/purge?grace_days=0&limit=100', { method: 'POST', auth: pa }), 200);
  assert.ok(!idle.purged.includes(t.id), 'an active tenant is not purged');
  assert.equal((await fetch(done.download.url)).status, 200);

  const del = await platform(`/v1/platform/tenants/${t.id}`, { method: 'DELETE', auth: pa });
  assert.equal(del.status, 200, await del.text());
  assert.equal((await del.json()).status, 'deleted');
  // Still within a one-day grace: kept, objects and all.
  const early = await json(await platform('/v1/platform/purge?grace_days=1&limit=100', { method: 'POST', auth: pa }), 200);
  assert.ok(!early.purged.includes(t.id), 'purged within its grace period');
  assert.equal((await getPlatformTenant(t.id, pa)).status, 'deleted');
  assert.equal((await fetch(done.download.url)).status, 200);

  const report = await json(await platform('/v1/platform/purge?grace_days=0&limit=100', { method: 'POST', auth: pa }), 200);
  assert.ok(report.purged.includes(t.id), JSON.stringify(report));
  assert.ok(report.objects_deleted >= 1, JSON.stringify(report));
  assert.ok(!report.failed.some((f) => f.tenant === t.id), JSON.stringify(report.failed));
  // The object is gone from S3, the rows from the database; the seeded deleted tenant (no
  // deletion time) is untouched.
  assert.equal((await fetch(done.download.url)).status, 404);
  await assertProblem(await platform(`/v1/platform/tenants/${t.id}`, { auth: pa }), 404, 'not_found');
  const [{ tenants, files }] = await db.query(
    'SELECT (SELECT count(*)::int FROM tenants WHERE id = $1) AS tenants, (SELECT count(*)::int FROM files WHERE tenant_id = $1) AS files',
    [t.id],
  );
  assert.deepEqual({ tenants, files }, { tenants: 0, files: 0 });
  assert.equal((await db.query("SELECT count(*)::int AS n FROM tenants WHERE slug = 'gone'"))[0].n, 1);
  // The host no longer resolves to a tenant (a cached record may still say deleted).
  const host = await api(t, '/v1/storefront');
  assert.ok([404, 410].includes(host.status), `after purge: ${host.status}`);
  // Purging again finds nothing of it.
  const again = await json(await platform('/v1/platform/purge?grace_days=0&limit=100', { method: 'POST', auth: pa }), 200);
  assert.ok(!again.purged.includes(t.id));
});
