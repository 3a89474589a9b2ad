// The audit log (issue 14), black-box against one runtime: every write endpoint adds exactly one
// `audit_log` row in its own transaction, with the right actor, action, target and diff (secrets
// and personal data masked); refused writes and idempotent replays add none; `GET /v1/audit`
// (admins and owners) filters and pages the tenant's own rows only; and the app role can insert
// and read audit rows through the SQL proxy but never change or delete them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { neon, NeonDbError } from '@neondatabase/serverless';
import {
  adminDb, api, assertProblem, createTenant, member, platform, platformAdmin, runtime, setTxt,
  signedIn, stack,
} from './stack.mjs';

const db = adminDb;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const rand = () => randomUUID().slice(0, 8);

async function json(res, status) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  return JSON.parse(text);
}

/** Every audit row of a tenant, oldest first, read as the superuser. */
function rows(tenantId) {
  return db.query(
    `SELECT id::text, actor, action, target_type, target_id, changes, request_id
     FROM audit_log WHERE tenant_id = $1 ORDER BY at, id`,
    [tenantId],
  );
}

/**
 * Runs `write` and returns the one audit row it added to `tenantId` (asserting exactly one),
 * with `result` (what `write` returned).
 */
async function oneRow(tenantId, write, { requestId = true } = {}) {
  const before = await rows(tenantId);
  const result = await write();
  const after = await rows(tenantId);
  assert.equal(after.length, before.length + 1, `one new audit row: ${JSON.stringify(after.slice(before.length))}`);
  const row = after[after.length - 1];
  // The request id of the write: the response's X-Request-Id when `write` returned the response.
  if (requestId) {
    assert.ok(typeof row.request_id === 'string' && row.request_id.length > 0, `request id ${row.request_id}`);
  }
  if (typeof result?.headers?.get === 'function') {
    assert.equal(row.request_id, result.headers.get('x-request-id'));
  }
  return { row, result };
}

/** Runs `write` and asserts it added no audit row to `tenantId`. */
async function noRow(tenantId, write) {
  const before = (await rows(tenantId)).length;
  const result = await write();
  assert.equal((await rows(tenantId)).length, before, 'no audit row');
  return result;
}

function expectRow(row, { actor, action, targetType, targetId, changes }) {
  if (actor instanceof RegExp) assert.match(row.actor, actor);
  else assert.equal(row.actor, actor);
  assert.equal(row.action, action);
  assert.equal(row.target_type, targetType);
  if (targetId !== undefined) assert.equal(row.target_id, targetId);
  if (changes) {
    for (const [field, change] of Object.entries(changes)) {
      assert.deepEqual(row.changes[field], change, `${action}: ${field} in ${JSON.stringify(row.changes)}`);
    }
  }
}

/** A fresh tenant with an owner, an admin and a plain member. */
async function team(opts = {}) {
  const t = await createTenant({ prefix: 'audit', ...opts });
  const owner = await member(t, 'owner');
  const admin = await member(t, 'admin');
  const plain = await member(t, 'member');
  return { t, owner, admin, plain };
}

const newItem = (over = {}) => ({ sku: `SKU-${rand()}`, name: 'Blue mug', price: '12.5', inventory: 10, status: 'active', ...over });

// --- catalog ---------------------------------------------------------------------------

test('catalog: create, update and archive each add one row; replays and refusals none', async () => {
  const { t, admin } = await team();
  const key = randomUUID();
  const body = newItem();
  const created = await oneRow(t.id, async () =>
    json(await api(t, '/v1/catalog', { method: 'POST', auth: admin.auth, body, headers: { 'idempotency-key': key } }), 201));
  const item = created.result;
  expectRow(created.row, {
    actor: admin.userId, action: 'catalog.create', targetType: 'catalog_item', targetId: item.id,
    changes: {
      sku: { before: null, after: body.sku }, name: { before: null, after: 'Blue mug' },
      price: { before: null, after: '12.500' }, status: { before: null, after: 'active' },
    },
  });
  assert.ok(!('created_at' in created.row.changes) && !('updated_at' in created.row.changes));

  // The same key and body: the first answer again, and no second row.
  await noRow(t.id, async () => {
    const res = await api(t, '/v1/catalog', { method: 'POST', auth: admin.auth, body, headers: { 'idempotency-key': key } });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('idempotent-replayed'), 'true');
  });
  // Refused: invalid body (400), a taken SKU (409), a stale If-Match (412).
  await noRow(t.id, async () => assertProblem(await api(t, '/v1/catalog', { method: 'POST', auth: admin.auth, body: { sku: '' } }), 400, 'validation_failed'));
  await noRow(t.id, async () => assertProblem(await api(t, '/v1/catalog', { method: 'POST', auth: admin.auth, body: newItem({ sku: body.sku }) }), 409, 'sku_taken'));
  await noRow(t.id, async () => assertProblem(
    await api(t, `/v1/catalog/${item.id}`, { method: 'PATCH', auth: admin.auth, body: { price: '1' }, headers: { 'if-match': '"v9"' } }), 412, 'precondition_failed'));

  // Only the changed fields, before and after.
  const updated = await oneRow(t.id, async () =>
    json(await api(t, `/v1/catalog/${item.id}`, { method: 'PATCH', auth: admin.auth, body: { price: '14', name: 'Blue mug' } }), 200));
  expectRow(updated.row, { actor: admin.userId, action: 'catalog.update', targetType: 'catalog_item', targetId: item.id });
  assert.deepEqual(updated.row.changes, {
    price: { before: '12.500', after: '14.000' },
    version: { before: 1, after: 2 },
  });

  const archived = await oneRow(t.id, async () => api(t, `/v1/catalog/${item.id}`, { method: 'DELETE', auth: admin.auth }));
  assert.ok([200, 204].includes(archived.result.status), String(archived.result.status));
  expectRow(archived.row, {
    actor: admin.userId, action: 'catalog.archive', targetType: 'catalog_item', targetId: item.id,
    changes: { status: { before: 'active', after: 'archived' } },
  });
});

// --- orders ----------------------------------------------------------------------------

test('orders: a checkout is the visitor\'s row with the customer masked; status changes are the admin\'s', async () => {
  const { t, admin } = await team();
  const item = await json(await api(t, '/v1/catalog', { method: 'POST', auth: admin.auth, body: newItem() }), 201);
  const key = randomUUID();
  const body = {
    items: [{ item_id: item.id, quantity: 2 }],
    customer: { email: 'ada@example.com', name: 'Ada Lovelace' },
    shipping_address: { line1: '1 Market Street', city: 'Berlin', postal_code: '10115', country: 'DE' },
  };
  const placed = await oneRow(t.id, async () =>
    api(t, '/v1/storefront/checkout', { method: 'POST', body, headers: { 'idempotency-key': key } }));
  assert.equal(placed.result.status, 201);
  const order = await placed.result.json();
  const cookie = placed.result.headers.get('set-cookie');
  const visitor = /^ef_visitor=([0-9a-f-]{36})\./.exec(cookie)?.[1];
  assert.ok(visitor, cookie);
  expectRow(placed.row, {
    actor: `visitor:${visitor}`, action: 'order.create', targetType: 'order', targetId: order.id,
    changes: {
      customer: { before: null, after: '***' },
      shipping_address: { before: null, after: '***' },
      status: { before: null, after: 'pending' },
      total: { before: null, after: '25.000' },
    },
  });
  const text = JSON.stringify(placed.row.changes);
  for (const secret of ['ada@example.com', 'Ada Lovelace', 'Market Street']) assert.ok(!text.includes(secret), `${secret} in ${text}`);

  // A replay answers the same order and records nothing; nor does a refused checkout.
  await noRow(t.id, async () => {
    const res = await api(t, '/v1/storefront/checkout', { method: 'POST', body, headers: { 'idempotency-key': key, cookie: cookie.split(';')[0] } });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('idempotent-replayed'), 'true');
  });
  await noRow(t.id, async () => assertProblem(await api(t, '/v1/storefront/checkout', {
    method: 'POST', body: { ...body, items: [{ item_id: item.id, quantity: 1000 }] }, headers: { 'idempotency-key': randomUUID() },
  }), 409, 'out_of_stock'));

  const confirmed = await oneRow(t.id, async () =>
    json(await api(t, `/v1/orders/${order.id}`, { method: 'PATCH', auth: admin.auth, body: { status: 'confirmed' } }), 200));
  expectRow(confirmed.row, { actor: admin.userId, action: 'order.status_change', targetType: 'order', targetId: order.id });
  assert.deepEqual(confirmed.row.changes, { status: { before: 'pending', after: 'confirmed' }, version: { before: 1, after: 2 } });
  await noRow(t.id, async () => assertProblem(
    await api(t, `/v1/orders/${order.id}`, { method: 'PATCH', auth: admin.auth, body: { status: 'delivered' } }), 409, 'invalid_transition'));
});

// --- files -----------------------------------------------------------------------------

test('files: presign, complete and delete each add one row', async () => {
  const { t, admin, plain } = await team();
  const bytes = Buffer.from('\x89PNG\r\n\x1a\n audit');
  const up = await oneRow(t.id, async () =>
    json(await api(t, '/v1/uploads', { method: 'POST', auth: plain.auth, body: { filename: 'a.png', content_type: 'image/png', size: bytes.length } }), 201));
  const id = up.result.file.id;
  expectRow(up.row, {
    actor: plain.userId, action: 'file.create', targetType: 'file', targetId: id,
    changes: { status: { before: null, after: 'pending' }, declared_size: { before: null, after: bytes.length } },
  });
  await noRow(t.id, async () => assertProblem(
    await api(t, '/v1/uploads', { method: 'POST', auth: plain.auth, body: { filename: 'a.exe', content_type: 'application/x-msdownload', size: 3 } }),
    422, 'content_type_not_allowed'));

  const put = await fetch(up.result.upload.put.url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: bytes });
  assert.equal(put.status, 200, await put.text());
  const done = await oneRow(t.id, async () => json(await api(t, `/v1/uploads/${id}/complete`, { method: 'POST', auth: plain.auth }), 200));
  expectRow(done.row, {
    actor: plain.userId, action: 'file.complete', targetType: 'file', targetId: id,
    changes: { status: { before: 'pending', after: 'ready' }, size: { before: null, after: bytes.length } },
  });
  // Completing again changes nothing and records nothing.
  await noRow(t.id, async () => api(t, `/v1/uploads/${id}/complete`, { method: 'POST', auth: plain.auth }));

  const deleted = await oneRow(t.id, async () => api(t, `/v1/files/${id}`, { method: 'DELETE', auth: admin.auth }));
  assert.ok([200, 204].includes(deleted.result.status));
  expectRow(deleted.row, {
    actor: admin.userId, action: 'file.delete', targetType: 'file', targetId: id,
    changes: { status: { before: 'ready', after: 'deleted' } },
  });
  // Deleting it again deletes nothing: no row.
  await noRow(t.id, async () => assertProblem(await api(t, `/v1/files/${id}`, { method: 'DELETE', auth: admin.auth }), 404, 'not_found'));
});

// --- members and invitations -----------------------------------------------------------

test('members and invitations: invite, revoke, accept, role change and removal each add one row', async () => {
  const { t, owner, admin, plain } = await team();
  const email = `inv-${rand()}@example.test`;
  const invited = await oneRow(t.id, async () =>
    json(await api(t, '/v1/members/invitations', { method: 'POST', auth: admin.auth, body: { email, role: 'member' } }), 201));
  const inv = invited.result.invitation;
  expectRow(invited.row, {
    actor: admin.userId, action: 'invitation.create', targetType: 'invitation', targetId: inv.id,
    changes: { email: { before: null, after: '***' }, role: { before: null, after: 'member' }, status: { before: null, after: 'pending' } },
  });
  assert.ok(!JSON.stringify(invited.row.changes).includes(email));
  assert.ok(!JSON.stringify(invited.row.changes).includes(invited.result.token), 'the token never reaches the log');
  // Refused: a member may not invite (403 before any SQL), an admin may not invite an owner.
  await noRow(t.id, async () => assertProblem(
    await api(t, '/v1/members/invitations', { method: 'POST', auth: plain.auth, body: { email, role: 'member' } }), 403, 'insufficient_role'));
  await noRow(t.id, async () => {
    const res = await api(t, '/v1/members/invitations', { method: 'POST', auth: admin.auth, body: { email, role: 'owner' } });
    assert.equal(res.status, 403);
  });

  const revoked = await oneRow(t.id, async () => api(t, `/v1/members/invitations/${inv.id}`, { method: 'DELETE', auth: admin.auth }));
  assert.ok([200, 204].includes(revoked.result.status));
  expectRow(revoked.row, {
    actor: admin.userId, action: 'invitation.revoke', targetType: 'invitation', targetId: inv.id,
    changes: { status: { before: 'pending', after: 'revoked' } },
  });

  const again = await json(await api(t, '/v1/members/invitations', { method: 'POST', auth: owner.auth, body: { email, role: 'member' } }), 201);
  const invitee = await signedIn({ email });
  // The accepting request also creates the invitee's user row (not audited: identity, not a write
  // of the tenant), and adds exactly the one acceptance.
  const accepted = await oneRow(t.id, async () =>
    json(await api(t, `/v1/invitations/${again.token}/accept`, { method: 'POST', auth: invitee.auth }), 200));
  const joined = accepted.result.user_id ?? accepted.result.member?.user_id;
  assert.match(joined, UUID);
  expectRow(accepted.row, {
    actor: joined, action: 'invitation.accept', targetType: 'invitation', targetId: again.invitation.id,
    changes: { status: { before: 'pending', after: 'accepted' }, accepted_by: { before: null, after: joined } },
  });
  await noRow(t.id, async () => {
    const res = await api(t, `/v1/invitations/${again.token}/accept`, { method: 'POST', auth: invitee.auth });
    assert.ok(res.status >= 400 || res.status === 200, String(res.status));
  });

  const promoted = await oneRow(t.id, async () =>
    json(await api(t, `/v1/members/${plain.userId}`, { method: 'PATCH', auth: owner.auth, body: { role: 'admin' } }), 200));
  expectRow(promoted.row, {
    actor: owner.userId, action: 'member.update', targetType: 'member', targetId: plain.userId,
    changes: { role: { before: 'member', after: 'admin' } },
  });
  await noRow(t.id, async () => assertProblem(
    await api(t, `/v1/members/${owner.userId}`, { method: 'PATCH', auth: owner.auth, body: { role: 'member' } }), 409, 'last_owner'));
  // The same role again changes nothing, and records nothing.
  await noRow(t.id, async () =>
    json(await api(t, `/v1/members/${plain.userId}`, { method: 'PATCH', auth: owner.auth, body: { role: 'admin' } }), 200));

  const removed = await oneRow(t.id, async () => api(t, `/v1/members/${plain.userId}`, { method: 'DELETE', auth: owner.auth }));
  assert.ok([200, 204].includes(removed.result.status));
  expectRow(removed.row, {
    actor: owner.userId, action: 'member.remove', targetType: 'member', targetId: plain.userId,
    changes: { role: { before: 'admin', after: null } },
  });
});

// --- tenant settings and domains -------------------------------------------------------

test('tenant settings and domains: each change adds one row naming the settings that changed', async () => {
  const { t, owner, admin } = await team();
  const patched = await oneRow(t.id, async () =>
    json(await api(t, '/v1/tenant', { method: 'PATCH', auth: owner.auth, body: { name: 'Renamed shop', currency: 'USD' } }), 200));
  expectRow(patched.row, { actor: owner.userId, action: 'tenant.update', targetType: 'tenant', targetId: t.id });
  assert.deepEqual(patched.row.changes.name, { before: `Test ${t.slug}`, after: 'Renamed shop' });
  assert.deepEqual(patched.row.changes['settings.currency'], { before: 'EUR', after: 'USD' });
  assert.deepEqual(Object.keys(patched.row.changes).sort(), ['name', 'settings.currency', 'version']);
  await noRow(t.id, async () => assertProblem(await api(t, '/v1/tenant', { method: 'PATCH', auth: owner.auth, body: { currency: 'euro' } }), 400, 'validation_failed'));
  await noRow(t.id, async () => assertProblem(await api(t, '/v1/tenant', { method: 'PATCH', auth: admin.auth, body: { name: 'x' } }), 403, 'insufficient_role'));

  const hostname = `audit-${runtime}-${rand()}.example.test`;
  const added = await oneRow(t.id, async () =>
    json(await api(t, '/v1/tenant/domains', { method: 'POST', auth: owner.auth, body: { hostname } }), 201));
  expectRow(added.row, {
    actor: owner.userId, action: 'domain.add', targetType: 'domain', targetId: hostname,
    changes: { hostname: { before: null, after: hostname }, status: { before: null, after: 'pending' }, verification: { before: null, after: '***' } },
  });
  // Adding it again is the same claim: nothing written.
  await noRow(t.id, async () => api(t, '/v1/tenant/domains', { method: 'POST', auth: owner.auth, body: { hostname } }));
  const challenge = `_edgefront-challenge.${hostname}`;
  await setTxt(challenge, ['edgefront-verify=wrong']);
  await noRow(t.id, async () => assertProblem(
    await api(t, `/v1/tenant/domains/${hostname}/verify`, { method: 'POST', auth: owner.auth }), 422, 'domain_not_verified'));
  await setTxt(challenge, [added.result.verification.value]);
  const verified = await oneRow(t.id, async () =>
    json(await api(t, `/v1/tenant/domains/${hostname}/verify`, { method: 'POST', auth: owner.auth }), 200));
  expectRow(verified.row, {
    actor: owner.userId, action: 'domain.verify', targetType: 'domain', targetId: hostname,
    changes: { status: { before: 'pending', after: 'verified' } },
  });
  const deleted = await oneRow(t.id, async () => api(t, `/v1/tenant/domains/${hostname}`, { method: 'DELETE', auth: owner.auth }));
  assert.ok([200, 204].includes(deleted.result.status));
  expectRow(deleted.row, {
    actor: owner.userId, action: 'domain.delete', targetType: 'domain', targetId: hostname,
    changes: { hostname: { before: hostname, after: null } },
  });
  await setTxt(challenge, []);
});

// --- the platform ----------------------------------------------------------------------

test('platform: create, suspend, update and delete are the platform admin\'s rows on the tenant; sign-up the user\'s', async () => {
  const pa = await platformAdmin();
  const slug = `audit-${runtime}-${rand()}`;
  const ownerEmail = `owner-${rand()}@example.test`;
  const created = await json(await platform('/v1/platform/tenants', {
    method: 'POST', auth: pa, body: { slug, name: 'Audit Co', tier: 'basic', owner_email: ownerEmail },
  }), 201);
  const id = created.tenant.id;
  const [first, ...rest] = await rows(id);
  assert.equal(rest.length, 0, 'one row for the creation');
  expectRow(first, {
    actor: /^platform:[0-9a-f-]{36}$/, action: 'tenant.create', targetType: 'tenant', targetId: id,
    changes: {
      slug: { before: null, after: slug }, tier: { before: null, after: 'basic' },
      owner_email: { before: null, after: '***' },
    },
  });
  assert.ok(!JSON.stringify(first.changes).includes(ownerEmail));
  // The owner's first signed-in request joins through the platform's invitation: one row, theirs.
  const owner = await signedIn({ email: ownerEmail });
  // (The join happens in the identity lookup, a query outside any batch: it has no request id.)
  const joined = await oneRow(id, async () => json(await api(slug, '/v1/me', { auth: owner.auth }), 200), {
    requestId: false,
  });
  const [{ uid: ownerId }] = await db.query('SELECT user_id::text AS uid FROM tenant_members WHERE tenant_id = $1', [id]);
  expectRow(joined.row, {
    actor: ownerId, action: 'invitation.accept', targetType: 'invitation', targetId: created.invitation.id,
    changes: { status: { before: 'pending', after: 'accepted' }, role: { before: null, after: 'owner' } },
  });
  // A taken slug writes nothing anywhere.
  await assertProblem(await platform('/v1/platform/tenants', {
    method: 'POST', auth: pa, body: { slug, name: 'Again', tier: 'basic', owner_email: ownerEmail },
  }), 409, 'slug_taken');

  const suspended = await oneRow(id, async () =>
    json(await platform(`/v1/platform/tenants/${id}`, { method: 'PATCH', auth: pa, body: { status: 'suspended' } }), 200));
  expectRow(suspended.row, {
    actor: first.actor, action: 'tenant.suspend', targetType: 'tenant', targetId: id,
    changes: { status: { before: 'active', after: 'suspended' }, version: { before: 1, after: 2 } },
  });
  const updated = await oneRow(id, async () =>
    json(await platform(`/v1/platform/tenants/${id}`, { method: 'PATCH', auth: pa, body: { tier: 'premium', status: 'active' } }), 200));
  expectRow(updated.row, {
    actor: first.actor, action: 'tenant.update', targetType: 'tenant',
    changes: { tier: { before: 'basic', after: 'premium' }, status: { before: 'suspended', after: 'active' } },
  });
  await noRow(id, async () => assertProblem(
    await platform(`/v1/platform/tenants/${id}`, { method: 'PATCH', auth: pa, body: { name: 'x' }, headers: { 'if-match': '"v1"' } }), 412, 'precondition_failed'));
  const deleted = await oneRow(id, async () => platform(`/v1/platform/tenants/${id}`, { method: 'DELETE', auth: pa }));
  assert.ok([200, 204].includes(deleted.result.status));
  expectRow(deleted.row, {
    actor: first.actor, action: 'tenant.delete', targetType: 'tenant', targetId: id,
    changes: { status: { before: 'active', after: 'deleted' } },
  });

  // The purge (its SQL step, for this tenant only: other suites purge their own) keeps the
  // tenant's history and records itself.
  const app = neon(stack.origin.app_connection_string, stack.origin.bearer_token ? { authToken: stack.origin.bearer_token } : {});
  const [, [{ purged }]] = await app.transaction([
    app`SELECT set_config('app.actor', ${first.actor}, true)`,
    app`SELECT platform_purge_tenants(ARRAY[${id}]::uuid[], 0) AS purged`,
  ]);
  assert.deepEqual(purged.purged, [id]);
  assert.equal((await db.query('SELECT count(*)::int AS n FROM tenants WHERE id = $1', [id]))[0].n, 0);
  const history = await rows(id);
  assert.deepEqual(history.map((r) => r.action),
    ['tenant.create', 'invitation.accept', 'tenant.suspend', 'tenant.update', 'tenant.delete', 'tenant.purge']);
  expectRow(history[history.length - 1], {
    actor: first.actor, action: 'tenant.purge', targetType: 'tenant', targetId: id,
    changes: { slug: { before: slug, after: null } },
  });

  // Self-service sign-up: the signed-in user is the actor.
  const user = await signedIn();
  const own = `audit-su-${runtime}-${rand()}`;
  const signup = await json(await platform('/v1/signup', { method: 'POST', auth: user.auth, body: { slug: own, name: 'Mine' } }), 201);
  const signupId = (signup.tenant ?? signup).id;
  const [row, ...more] = await rows(signupId);
  assert.equal(more.length, 0);
  const [{ uid }] = await db.query('SELECT user_id::text AS uid FROM tenant_members WHERE tenant_id = $1', [signupId]);
  expectRow(row, {
    actor: uid, action: 'tenant.signup', targetType: 'tenant', targetId: signupId,
    changes: { slug: { before: null, after: own }, owner: { before: null, after: uid } },
  });
});

// --- GET /v1/audit ---------------------------------------------------------------------

test('GET /v1/audit: admins and owners only, newest first, filters, a cursor, and only the own tenant', async () => {
  const { t, owner, admin, plain } = await team();
  const other = await team();
  const skus = [];
  for (let i = 0; i < 3; i++) {
    const item = await json(await api(t, '/v1/catalog', { method: 'POST', auth: admin.auth, body: newItem() }), 201);
    skus.push(item);
  }
  await json(await api(t, `/v1/catalog/${skus[0].id}`, { method: 'PATCH', auth: owner.auth, body: { price: '99' } }), 200);
  await json(await api(other.t, '/v1/catalog', { method: 'POST', auth: other.admin.auth, body: newItem() }), 201);

  await assertProblem(await api(t, '/v1/audit', { auth: plain.auth }), 403, 'insufficient_role');
  await assertProblem(await api(t, '/v1/audit'), 401, 'missing_token');
  // Another tenant's admin is no member here.
  await assertProblem(await api(t, '/v1/audit', { auth: other.admin.auth }), 403, 'not_a_member');

  const all = await json(await api(t, '/v1/audit', { auth: admin.auth }), 200);
  assert.equal(all.next_cursor, null);
  assert.deepEqual(all.items.map((e) => e.action), ['catalog.update', 'catalog.create', 'catalog.create', 'catalog.create']);
  for (const e of all.items) {
    assert.deepEqual(Object.keys(e).sort(), ['action', 'actor', 'at', 'changes', 'id', 'request_id', 'target']);
    assert.match(e.id, UUID);
    assert.match(e.at, ISO);
    assert.equal(e.target.type, 'catalog_item');
  }
  assert.deepEqual(all.items[0].target, { type: 'catalog_item', id: skus[0].id });
  assert.equal(all.items[0].actor, owner.userId);
  assert.deepEqual(all.items[0].changes.price, { before: '12.500', after: '99.000' });
  // Owners read it too; the other tenant sees only its own row.
  assert.equal((await json(await api(t, '/v1/audit', { auth: owner.auth }), 200)).items.length, 4);
  const theirs = await json(await api(other.t, '/v1/audit', { auth: other.owner.auth }), 200);
  assert.equal(theirs.items.length, 1);
  assert.equal(theirs.items[0].actor, other.admin.userId);

  // Filters.
  const q = async (query) => (await json(await api(t, `/v1/audit?${query}`, { auth: admin.auth }), 200)).items;
  assert.equal((await q('action=catalog.create')).length, 3);
  assert.equal((await q(`actor=${owner.userId}`)).length, 1);
  assert.equal((await q(`actor=${admin.userId}`)).length, 3);
  assert.equal((await q(`target_type=catalog_item&target_id=${skus[0].id}`)).length, 2);
  assert.equal((await q('target_type=order')).length, 0);
  const mid = all.items[1].at;
  assert.deepEqual((await q(`since=${encodeURIComponent(mid)}`)).map((e) => e.id), all.items.slice(0, 2).map((e) => e.id));
  assert.deepEqual((await q(`until=${encodeURIComponent(mid)}`)).map((e) => e.id), all.items.slice(2).map((e) => e.id));

  // The cursor: pages of two, never repeating or skipping, even with rows added meanwhile.
  const p1 = await json(await api(t, '/v1/audit?limit=2', { auth: admin.auth }), 200);
  assert.equal(p1.items.length, 2);
  assert.ok(p1.next_cursor);
  await json(await api(t, '/v1/catalog', { method: 'POST', auth: admin.auth, body: newItem() }), 201);
  const p2 = await json(await api(t, `/v1/audit?limit=2&cursor=${encodeURIComponent(p1.next_cursor)}`, { auth: admin.auth }), 200);
  assert.deepEqual([...p1.items, ...p2.items].map((e) => e.id), all.items.map((e) => e.id));
  assert.equal(p2.next_cursor, null);

  // Bad filters: one 400 naming each, no database text.
  const bad = await assertProblem(await api(t, '/v1/audit?actor=root&action=DROP%20TABLE&since=yesterday&limit=0&cursor=x', { auth: admin.auth }), 400, 'validation_failed');
  assert.deepEqual(bad.errors.map((e) => e.field).sort(), ['action', 'actor', 'cursor', 'limit', 'since']);
  assert.ok(!/postgres|sql|syntax|relation/i.test(JSON.stringify(bad)), JSON.stringify(bad));
  const order = await assertProblem(await api(t, '/v1/audit?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z', { auth: admin.auth }), 400, 'validation_failed');
  assert.deepEqual(order.errors.map((e) => e.field), ['since']);
});

// --- append-only, through the proxy as the app role ------------------------------------

test('the app role may insert and read audit rows of its tenant, never update, delete or truncate them', async () => {
  const origin = stack.origin;
  const app = neon(origin.app_connection_string, origin.bearer_token ? { authToken: origin.bearer_token } : {});
  const t = await createTenant({ prefix: 'audit' });
  const other = await createTenant({ prefix: 'audit' });
  const set = (id) => app`SELECT set_config('app.current_tenant', ${id}, true)`;

  const [, inserted, read] = await app.transaction([
    set(t.id),
    app`INSERT INTO audit_log (tenant_id, actor, action, target_type, target_id) VALUES (${t.id}, 'tester', 'test.insert', 'test', 'x') RETURNING id::text`,
    app`SELECT count(*)::int AS n FROM audit_log`,
  ]);
  assert.match(inserted[0].id, UUID);
  assert.equal(read[0].n, 1);
  const rowId = inserted[0].id;

  async function refused(statement, codes) {
    try {
      await app.transaction([set(t.id), statement]);
    } catch (e) {
      assert.ok(e instanceof NeonDbError, String(e));
      assert.ok(codes.includes(e.code), `${e.code}: ${e.message}`);
      return e;
    }
    assert.fail('the statement must fail');
  }
  // 42501: insufficient_privilege.
  await refused(app`UPDATE audit_log SET action = 'test.rewritten' WHERE id = ${rowId}::uuid`, ['42501']);
  await refused(app`DELETE FROM audit_log WHERE id = ${rowId}::uuid`, ['42501']);
  await refused(app`DELETE FROM audit_log`, ['42501']);
  await refused(app`TRUNCATE audit_log`, ['42501']);
  // Another tenant's row cannot be written (row-level security's WITH CHECK).
  await refused(app`INSERT INTO audit_log (tenant_id, action, target_type, target_id) VALUES (${other.id}, 'test.insert', 'test', 'x')`, ['42501']);
  // Without a tenant the app sees no audit row at all.
  assert.equal((await app`SELECT count(*)::int AS n FROM audit_log`)[0].n, 0);

  // The trigger refuses even a role that could (defence in depth): the superuser.
  for (const sql of [
    ['UPDATE audit_log SET action = $2 WHERE id = $1::uuid', [rowId, 'test.rewritten']],
    ['DELETE FROM audit_log WHERE id = $1::uuid', [rowId]],
  ]) {
    await assert.rejects(db.query(...sql), (e) => e.code === '42501' && /append-only/.test(e.message));
  }
  const [{ action }] = await db.query('SELECT action FROM audit_log WHERE id = $1::uuid', [rowId]);
  assert.equal(action, 'test.insert');
});
