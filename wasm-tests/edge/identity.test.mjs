// Identity and membership (issue 12), black-box against one runtime, on tenant hosts: members
// come from our database (membership mode), so a token's groups and tenant claim grant nothing;
// invitations, role changes and removals take effect on the very next request; the last owner
// stays; tenant settings, custom domains verified through DNS-over-HTTPS (the stack's fake
// resolver), usage. Written against the contract (/work/contract-12.md); each test makes its
// own tenants and users, so runtimes and reruns never share rows. Where the contract is silent,
// a test asserts what a demanding API client expects and says so in a comment marked
// "(contract silent)".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  api, assertProblem, createTenant, member, onHost, platformAdmin, runtime, setTxt, signedIn, stack,
  adminDb,
} from './stack.mjs';

const db = adminDb;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/; // public.iso_utc
const rand = () => randomUUID().slice(0, 8);

/** The same token with one character changed within its class (still well-formed, unknown). */
function tweak(token) {
  const c = token[token.length - 1];
  const next = /[0-9]/.test(c) ? String((Number(c) + 1) % 10) : /[a-z]/.test(c) ? (c === 'a' ? 'b' : 'a') : /[A-Z]/.test(c) ? (c === 'A' ? 'B' : 'A') : c === '-' ? '_' : '-';
  return token.slice(0, -1) + next;
}

// --- helpers ---------------------------------------------------------------------------

/** Asserts the status (showing the body when it differs) and returns the parsed body. */
async function json(res, status) {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

/** A tenant with its owner (a registered member): `{t, owner}`. Premium: room for members. */
async function tenantWithOwner(opts = {}) {
  const t = await createTenant({ tier: 'premium', ...opts });
  return { t, owner: await member(t, 'owner') };
}

/** The caller's role from `GET /v1/me` (contract silent on the shape: `role` or `roles[0]`). */
function roleOf(me) {
  return me.role ?? (Array.isArray(me.roles) ? me.roles[0] : undefined);
}

const me = (t, auth) => api(t, '/v1/me', { auth });

/** Every member document of the tenant (all pages). */
async function listMembers(t, auth) {
  const out = [];
  let cursor = null;
  for (let i = 0; i < 50; i++) {
    const body = await json(await api(t, `/v1/members${cursor ? `?cursor=${cursor}` : ''}`, { auth }), 200);
    out.push(...body.items);
    cursor = body.next_cursor;
    if (!cursor) return out;
  }
  throw new Error('pagination did not end');
}

async function pendingInvitations(t, auth) {
  return (await json(await api(t, '/v1/members/invitations', { auth }), 200)).items;
}

function invite(t, auth, email, role = 'member') {
  return api(t, '/v1/members/invitations', { method: 'POST', auth, body: { email, role } });
}

/** Invites and checks the 201 document: `{invitation, token, accept_path}`. */
async function invited(t, auth, email, role = 'member') {
  const body = await json(await invite(t, auth, email, role), 201);
  assert.match(body.invitation.id, UUID);
  assert.equal(body.invitation.email, email.toLowerCase());
  assert.equal(body.invitation.role, role);
  assert.equal(body.invitation.status, 'pending');
  assert.match(body.invitation.created_at, ISO);
  assert.match(body.invitation.expires_at, ISO);
  assert.equal(body.invitation.accepted_at, null);
  assert.ok(typeof body.token === 'string' && body.token.length >= 20, 'an unguessable token');
  assert.equal(body.accept_path, `/v1/invitations/${body.token}/accept`);
  assert.ok(!JSON.stringify(body.invitation).includes(body.token), 'the invitation document never holds the token');
  return body;
}

const accept = (t, auth, token) => api(t, `/v1/invitations/${token}/accept`, { method: 'POST', auth });
const setRole = (t, auth, userId, role) => api(t, `/v1/members/${userId}`, { method: 'PATCH', auth, body: { role } });
const removeMember = (t, auth, userId) => api(t, `/v1/members/${userId}`, { method: 'DELETE', auth });

/** The member document of a PATCH /v1/members reply (contract silent: the doc or `{member}`). */
const memberDoc = (body) => body.member ?? body;

/** A catalog write: needs admin. */
const newItem = (t, auth) =>
  api(t, '/v1/catalog', { method: 'POST', auth, body: { sku: `SKU-${rand()}`, name: 'Blue mug', price: '12.5' } });

async function getTenant(t, auth) {
  const res = await api(t, '/v1/tenant', { auth });
  const doc = await json(res, 200);
  return { doc, etag: res.headers.get('etag') };
}

const patchTenant = (t, auth, body, headers = {}) => api(t, '/v1/tenant', { method: 'PATCH', auth, body, headers });

const fieldsOf = (problem) => problem.errors.map((e) => e.field);

/** Asserts a 400 validation_failed whose `errors` name (at least) every field matching `patterns`. */
async function assertFields(res, patterns) {
  const p = await assertProblem(res, 400, 'validation_failed');
  assert.ok(Array.isArray(p.errors) && p.errors.length > 0, JSON.stringify(p));
  for (const e of p.errors) assert.ok(e.field && e.code && e.message, `incomplete field error ${JSON.stringify(e)}`);
  const fields = fieldsOf(p);
  for (const pat of patterns) {
    assert.ok(fields.some((f) => (pat instanceof RegExp ? pat.test(f) : f === pat)), `no error for ${pat} in ${JSON.stringify(fields)}`);
  }
  return p;
}

// --- membership is the database's, not the token's -----------------------------------

test('a token alone grants nothing: forged tenant id and owner groups on another tenant → 403 not_a_member everywhere', async () => {
  const { t } = await tenantWithOwner();
  const other = await createTenant();
  // A real owner of another tenant, and a signed-in nobody, both claiming to own t.
  const forge = { 'custom:tenant_id': t.id, 'custom:role': 'owner', 'cognito:groups': ['owner'] };
  const elsewhere = await member(other, 'owner', forge);
  const nobody = await signedIn({ extra: forge });
  const routes = [
    ['GET', '/v1/me'],
    ['GET', '/v1/members'],
    ['GET', '/v1/members/invitations'],
    ['POST', '/v1/members/invitations', { email: `x-${rand()}@example.test`, role: 'member' }],
    ['GET', '/v1/tenant'],
    ['PATCH', '/v1/tenant', { name: 'Taken over' }],
    ['GET', '/v1/tenant/domains'],
    ['POST', '/v1/tenant/domains', { hostname: `shop-${rand()}.example.test` }],
    ['GET', '/v1/usage'],
    ['GET', '/v1/catalog'],
    ['POST', '/v1/catalog', { sku: 'FORGED-1', name: 'Forged', price: '1' }],
    ['GET', '/v1/orders'],
    ['GET', '/v1/files'],
  ];
  for (const who of [elsewhere, nobody]) {
    for (const [method, path, body] of routes) {
      const res = await api(t, path, { method, auth: who.auth, body });
      await assertProblem(res, 403, 'not_a_member').catch((e) => {
        throw new Error(`${method} ${path}: ${e.message}`);
      });
    }
  }
  // Nothing was written on the way.
  const [{ n }] = await db.query('SELECT count(*)::int AS n FROM catalog_items WHERE tenant_id = $1', [t.id]);
  assert.equal(n, 0);
  const [{ name }] = await db.query('SELECT name FROM tenants WHERE id = $1', [t.id]);
  assert.equal(name, `Test ${t.slug}`);
  // The forger is still an owner of their own tenant: in membership mode the tenant claim is
  // not consulted at all (contract silent; a user may belong to several tenants).
  assert.equal((await me(other, elsewhere.auth)).status, 200);
});

test('a member whose token says owner is still a member: the role comes from the database', async () => {
  const { t } = await tenantWithOwner();
  const m = await member(t, 'member', { 'cognito:groups': ['owner'], 'custom:role': 'owner' });
  const body = await json(await me(t, m.auth), 200);
  assert.equal(roleOf(body), 'member');
  await assertProblem(await newItem(t, m.auth), 403, 'insufficient_role');
  await assertProblem(await patchTenant(t, m.auth, { name: 'Nope' }), 403, 'insufficient_role');
  await assertProblem(await invite(t, m.auth, `x-${rand()}@example.test`), 403, 'insufficient_role');
});

test('GET /v1/members lists members with their roles; members may read, not write', async () => {
  const { t, owner } = await tenantWithOwner();
  const admin = await member(t, 'admin');
  const m = await member(t, 'member');
  const list = await listMembers(t, m.auth);
  assert.equal(list.length, 3);
  const byId = Object.fromEntries(list.map((x) => [x.user_id, x]));
  assert.equal(byId[owner.userId].role, 'owner');
  assert.equal(byId[owner.userId].email, owner.email);
  assert.equal(byId[admin.userId].role, 'admin');
  assert.equal(byId[m.userId].role, 'member');
  for (const x of list) {
    assert.match(x.user_id, UUID);
    assert.match(x.joined_at, ISO);
    assert.deepEqual(Object.keys(x).sort(), ['email', 'joined_at', 'name', 'role', 'user_id']);
  }
  // Another tenant's members are not listed here.
  const other = await createTenant();
  await member(other, 'owner');
  assert.equal((await listMembers(t, owner.auth)).length, 3);
  // Paging: one per page, every member once.
  const first = await json(await api(t, '/v1/members?limit=1', { auth: m.auth }), 200);
  assert.equal(first.items.length, 1);
  assert.ok(first.next_cursor, 'a next cursor');
  await assertProblem(await api(t, '/v1/members/invitations', { auth: m.auth }), 403, 'insufficient_role');
  await assertProblem(await setRole(t, m.auth, admin.userId, 'member'), 403, 'insufficient_role');
  await assertProblem(await removeMember(t, m.auth, admin.userId), 403, 'insufficient_role');
});

test('invite → accept → role change → removal each take effect on the next request', async () => {
  const { t, owner } = await tenantWithOwner();
  const invitee = await signedIn({ email: `invitee-${rand()}@example.test` });
  // Not yet a member: refused (and a cached "no role" must not outlive the acceptance).
  await assertProblem(await api(t, '/v1/members', { auth: invitee.auth }), 403, 'not_a_member');

  const inv = await invited(t, owner.auth, invitee.email, 'member');
  const pending = await pendingInvitations(t, owner.auth);
  assert.deepEqual(pending.map((i) => i.id), [inv.invitation.id]);
  assert.equal(pending[0].status, 'pending');
  assert.ok(!JSON.stringify(pending).includes(inv.token), 'listings never show the token');

  const accepted = await json(await api(t, inv.accept_path, { method: 'POST', auth: invitee.auth }), 200);
  assert.equal(accepted.member.role, 'member');
  assert.equal(accepted.member.email, invitee.email);
  assert.match(accepted.member.user_id, UUID);
  const userId = accepted.member.user_id;

  // The very next request: a member.
  const members = await listMembers(t, invitee.auth);
  assert.ok(members.some((x) => x.user_id === userId && x.role === 'member'));
  assert.equal(roleOf(await json(await me(t, invitee.auth), 200)), 'member');
  await assertProblem(await newItem(t, invitee.auth), 403, 'insufficient_role');
  assert.deepEqual(await pendingInvitations(t, owner.auth), [], 'an accepted invitation is no longer pending');

  // Promoted: the next write that needs admin succeeds.
  const promoted = memberDoc(await json(await setRole(t, owner.auth, userId, 'admin'), 200));
  assert.equal(promoted.role, 'admin');
  assert.equal(promoted.user_id, userId);
  assert.equal((await newItem(t, invitee.auth)).status, 201);

  // Demoted again: refused on the next request.
  assert.equal(memberDoc(await json(await setRole(t, owner.auth, userId, 'member'), 200)).role, 'member');
  await assertProblem(await newItem(t, invitee.auth), 403, 'insufficient_role');

  // Removed: not a member on the next request.
  const gone = await removeMember(t, owner.auth, userId);
  assert.equal(gone.status, 204, await gone.text());
  await assertProblem(await api(t, '/v1/members', { auth: invitee.auth }), 403, 'not_a_member');
  assert.ok(!(await listMembers(t, owner.auth)).some((x) => x.user_id === userId));
  // Removing again: nothing there.
  await assertProblem(await removeMember(t, owner.auth, userId), 404, 'not_found');

  // The invitation was single-use.
  await assertProblem(await accept(t, invitee.auth, inv.token), 409, 'invitation_used');
});

test('an invitation is single-use: of 5 concurrent accepts exactly one is accepted', async () => {
  const { t, owner } = await tenantWithOwner();
  const email = `race-${rand()}@example.test`;
  const inv = await invited(t, owner.auth, email, 'admin');
  // Five different people holding the same (verified) address race for it.
  const racers = await Promise.all(Array.from({ length: 5 }, () => signedIn({ email })));
  const results = await Promise.all(racers.map((r) => accept(t, r.auth, inv.token)));
  const statuses = results.map((r) => r.status).sort();
  assert.deepEqual(statuses, [200, 409, 409, 409, 409], `statuses ${statuses}`);
  for (const r of results.filter((x) => x.status === 409)) await assertProblem(r, 409, 'invitation_used');
  const winner = racers[results.findIndex((r) => r.status === 200)];
  const members = await listMembers(t, owner.auth);
  assert.equal(members.length, 2);
  assert.equal(members.filter((x) => x.email === email).length, 1);
  assert.equal(roleOf(await json(await me(t, winner.auth), 200)), 'admin');
  for (const loser of racers.filter((r) => r !== winner)) {
    await assertProblem(await me(t, loser.auth), 403, 'not_a_member');
  }
});

test('accepting: wrong email → 403 email_mismatch, unverified → 403 email_unverified, unknown or revoked → 404, expired → 410', async () => {
  const { t, owner } = await tenantWithOwner();
  const email = `Mixed.Case-${rand()}@Example.test`;
  const inv = await invited(t, owner.auth, email, 'member');
  const stranger = await signedIn({ email: `someone-else-${rand()}@example.test` });
  await assertProblem(await accept(t, stranger.auth, inv.token), 403, 'email_mismatch');
  await assertProblem(await me(t, stranger.auth), 403, 'not_a_member');
  const unverified = await signedIn({ email: email.toLowerCase(), emailVerified: false });
  await assertProblem(await accept(t, unverified.auth, inv.token), 403, 'email_unverified');
  // Unknown tokens, and this token on another tenant's host, are simply not found.
  await assertProblem(await accept(t, stranger.auth, tweak(inv.token)), 404, 'not_found');
  const other = await createTenant();
  const right = await signedIn({ email: email.toLowerCase() });
  await assertProblem(await accept(other, right.auth, inv.token), 404, 'not_found');
  // Without a token at all: 401.
  await assertProblem(await api(t, inv.accept_path, { method: 'POST' }), 401, 'missing_token');
  // Still pending after every refusal; the right person (address compared case-insensitively) gets in.
  assert.equal((await pendingInvitations(t, owner.auth)).length, 1);
  assert.equal((await json(await accept(t, right.auth, inv.token), 200)).member.role, 'member');

  // Revoked: not found; expired: gone.
  const revokedEmail = `revoked-${rand()}@example.test`;
  const rev = await invited(t, owner.auth, revokedEmail);
  const del = await api(t, `/v1/members/invitations/${rev.invitation.id}`, { method: 'DELETE', auth: owner.auth });
  assert.equal(del.status, 204, await del.text());
  await assertProblem(await api(t, `/v1/members/invitations/${rev.invitation.id}`, { method: 'DELETE', auth: owner.auth }), 404, 'not_found');
  await assertProblem(await accept(t, (await signedIn({ email: revokedEmail })).auth, rev.token), 404, 'not_found');

  const lateEmail = `late-${rand()}@example.test`;
  const late = await invited(t, owner.auth, lateEmail);
  await db.query(
    "UPDATE tenant_invitations SET created_at = now() - interval '8 days', expires_at = now() - interval '1 day' WHERE id = $1",
    [late.invitation.id],
  );
  await assertProblem(await accept(t, (await signedIn({ email: lateEmail })).auth, late.token), 410, 'invitation_expired');
  assert.deepEqual(await pendingInvitations(t, owner.auth), [], 'revoked and expired invitations are not pending');
});

test('inviting: a new invitation supersedes the pending one; members are refused', async () => {
  const { t, owner } = await tenantWithOwner();
  const existing = await member(t, 'member');
  await assertProblem(await invite(t, owner.auth, existing.email), 409, 'already_member');
  await assertProblem(await invite(t, owner.auth, existing.email.toUpperCase()), 409, 'already_member');
  const email = `twice-${rand()}@example.test`;
  const first = await invited(t, owner.auth, email, 'member');
  const second = await invited(t, owner.auth, email, 'admin');
  const pending = await pendingInvitations(t, owner.auth);
  assert.deepEqual(pending.map((i) => i.id), [second.invitation.id]);
  const person = await signedIn({ email });
  await assertProblem(await accept(t, person.auth, first.token), 404, 'not_found');
  assert.equal((await json(await accept(t, person.auth, second.token), 200)).member.role, 'admin');
});

test('inviting: members plus pending invitations may not exceed max_members', async () => {
  const t = await createTenant({ settings: { limits: { max_members: 3 } } });
  const owner = await member(t, 'owner');
  await member(t, 'member');
  const seat = await invited(t, owner.auth, `last-seat-${rand()}@example.test`);
  // owner + member + one pending = 3 = max_members: a fourth seat is refused, nothing added.
  await assertProblem(await invite(t, owner.auth, `one-too-many-${rand()}@example.test`), 403, 'tier_limit_reached');
  assert.deepEqual((await pendingInvitations(t, owner.auth)).map((i) => i.id), [seat.invitation.id]);
  // Revoking the pending one frees its seat.
  assert.equal((await api(t, `/v1/members/invitations/${seat.invitation.id}`, { method: 'DELETE', auth: owner.auth })).status, 204);
  await invited(t, owner.auth, `now-fits-${rand()}@example.test`);
});

test('only owners invite owners; nobody raises anyone above their own role', async () => {
  const { t, owner } = await tenantWithOwner();
  const admin = await member(t, 'admin');
  const m = await member(t, 'member');
  const otherAdmin = await member(t, 'admin');

  await assertProblem(await invite(t, admin.auth, `o-${rand()}@example.test`, 'owner'), 403, 'insufficient_role');
  await invited(t, admin.auth, `a-${rand()}@example.test`, 'admin');
  await invited(t, owner.auth, `o-${rand()}@example.test`, 'owner');
  await assertProblem(await invite(t, m.auth, `m-${rand()}@example.test`, 'member'), 403, 'insufficient_role');

  // An admin may promote a member to admin and demote another admin, but make no owner and
  // touch no owner.
  await assertProblem(await setRole(t, admin.auth, m.userId, 'owner'), 403, 'insufficient_role');
  await assertProblem(await setRole(t, admin.auth, admin.userId, 'owner'), 403, 'insufficient_role');
  await assertProblem(await setRole(t, admin.auth, owner.userId, 'member'), 403, 'insufficient_role');
  await assertProblem(await removeMember(t, admin.auth, owner.userId), 403, 'insufficient_role');
  assert.equal(memberDoc(await json(await setRole(t, admin.auth, otherAdmin.userId, 'member'), 200)).role, 'member');
  assert.equal(memberDoc(await json(await setRole(t, admin.auth, m.userId, 'admin'), 200)).role, 'admin');
  // An owner may make owners.
  assert.equal(memberDoc(await json(await setRole(t, owner.auth, m.userId, 'owner'), 200)).role, 'owner');
  const roles = Object.fromEntries((await listMembers(t, owner.auth)).map((x) => [x.user_id, x.role]));
  assert.deepEqual(roles, { [owner.userId]: 'owner', [admin.userId]: 'admin', [m.userId]: 'owner', [otherAdmin.userId]: 'member' });
  // Unknown member: 404.
  await assertProblem(await setRole(t, owner.auth, randomUUID(), 'member'), 404, 'not_found');
});

test('anyone may leave; leaving takes effect on the next request', async () => {
  const { t } = await tenantWithOwner();
  const m = await member(t, 'member');
  const other = await member(t, 'member');
  await assertProblem(await removeMember(t, m.auth, other.userId), 403, 'insufficient_role');
  const left = await removeMember(t, m.auth, m.userId);
  assert.equal(left.status, 204, await left.text());
  await assertProblem(await me(t, m.auth), 403, 'not_a_member');
});

test('the last owner can neither leave nor be demoted: 409 last_owner', async () => {
  const { t, owner } = await tenantWithOwner();
  await assertProblem(await setRole(t, owner.auth, owner.userId, 'admin'), 409, 'last_owner');
  await assertProblem(await removeMember(t, owner.auth, owner.userId), 409, 'last_owner');
  // A platform admin acts as an owner, and meets the same rule.
  const pa = await platformAdmin();
  await assertProblem(await setRole(t, pa, owner.userId, 'member'), 409, 'last_owner');
  await assertProblem(await removeMember(t, pa, owner.userId), 409, 'last_owner');
  const list = await listMembers(t, owner.auth);
  assert.deepEqual(list.map((x) => x.role), ['owner']);
  assert.equal(roleOf(await json(await me(t, owner.auth), 200)), 'owner');
});

test('two owners demoting themselves at once: exactly one succeeds, one owner remains', async () => {
  const { t, owner } = await tenantWithOwner();
  const second = await member(t, 'owner');
  const results = await Promise.all([
    setRole(t, owner.auth, owner.userId, 'admin'),
    setRole(t, second.auth, second.userId, 'admin'),
  ]);
  const statuses = results.map((r) => r.status).sort();
  assert.deepEqual(statuses, [200, 409], `statuses ${statuses}`);
  await assertProblem(results.find((r) => r.status === 409), 409, 'last_owner');
  const owners = (await listMembers(t, owner.auth)).filter((x) => x.role === 'owner');
  assert.equal(owners.length, 1);
  // The demoted one is an admin on the next request: the owner-only PATCH /v1/tenant refuses.
  const demoted = results[0].status === 200 ? owner : second;
  await assertProblem(await patchTenant(t, demoted.auth, { name: 'x' }), 403, 'insufficient_role');
});

test('two owners removing each other at once: exactly one succeeds', async () => {
  const { t, owner } = await tenantWithOwner();
  const second = await member(t, 'owner');
  const results = await Promise.all([
    removeMember(t, owner.auth, second.userId),
    removeMember(t, second.auth, owner.userId),
  ]);
  const statuses = results.map((r) => r.status).sort();
  // The loser meets either the last-owner rule or (its own row gone first) no membership.
  assert.equal(statuses.filter((s) => s === 204).length, 1, `statuses ${statuses}`);
  const loser = results.find((r) => r.status !== 204);
  assert.ok([403, 404, 409].includes(loser.status), `loser ${loser.status}`);
  const [{ n }] = await db.query("SELECT count(*)::int AS n FROM tenant_members WHERE tenant_id = $1 AND role = 'owner'", [t.id]);
  assert.equal(n, 1);
});

// --- tenant settings -------------------------------------------------------------------

test('GET/PATCH /v1/tenant: members read, only owners write, with ETag and If-Match', async () => {
  const { t, owner } = await tenantWithOwner();
  const admin = await member(t, 'admin');
  const m = await member(t, 'member');
  const { doc, etag } = await getTenant(t, m.auth);
  assert.equal(doc.id, t.id);
  assert.equal(doc.slug, t.slug);
  assert.equal(doc.tier, 'premium');
  assert.equal(doc.status, 'active');
  assert.equal(doc.version, 1);
  assert.equal(doc.settings.currency, 'EUR');
  assert.deepEqual(doc.domains, []);
  assert.equal(etag, '"v1"');
  for (const k of ['id', 'slug', 'name', 'tier', 'status', 'settings', 'version', 'created_at', 'updated_at', 'domains']) {
    assert.ok(k in doc, `tenant document lacks ${k}`);
  }

  await assertProblem(await patchTenant(t, admin.auth, { name: 'Admin was here' }), 403, 'insufficient_role');
  const res = await patchTenant(t, owner.auth, {
    name: 'Renamed Shop',
    currency: 'USD',
    branding: { primary_color: '#112233' },
  }, { 'if-match': '"v1"' });
  const updated = await json(res, 200);
  assert.equal(updated.version, 2);
  assert.equal(updated.name, 'Renamed Shop');
  assert.equal(updated.settings.currency, 'USD');
  assert.equal(updated.settings.branding.primary_color, '#112233');
  assert.equal(res.headers.get('etag'), '"v2"');
  // The public profile (served from the cached tenant record) shows it on the next request.
  const profile = await json(await api(t, '/v1/storefront'), 200);
  assert.equal(profile.name, 'Renamed Shop');
  assert.equal(profile.currency, 'USD');
  assert.equal(profile.branding.primary_color, '#112233');

  // A stale version: 412, nothing changes.
  const stale = await patchTenant(t, owner.auth, { name: 'Lost update' }, { 'if-match': '"v1"' });
  await assertProblem(stale, 412, 'precondition_failed');
  assert.equal((await getTenant(t, owner.auth)).doc.name, 'Renamed Shop');
  // Without If-Match the write just applies; settings members are replaced one by one and a
  // null member is removed.
  const again = await json(await patchTenant(t, owner.auth, { branding: null, description: 'Mugs and more' }), 200);
  assert.equal(again.version, 3);
  assert.equal(again.settings.currency, 'USD');
  assert.ok(!('branding' in again.settings), JSON.stringify(again.settings));
  assert.equal(again.settings.description, 'Mugs and more');
  assert.equal((await getTenant(t, admin.auth)).etag, '"v3"');
  // A platform admin acts as an owner.
  assert.equal((await json(await patchTenant(t, await platformAdmin(), { name: 'By the platform' }), 200)).version, 4);
});

test('PATCH /v1/tenant: invalid fields are all named and nothing changes', async () => {
  const { t, owner } = await tenantWithOwner();
  const before = (await getTenant(t, owner.auth)).doc;
  const bad = await patchTenant(t, owner.auth, {
    name: '   ',
    currency: 'euro',
    branding: { primary_color: 'blue' },
    colour: 'red',
  });
  await assertFields(bad, [/name$/, /currency$/, /primary_color$/, /colour$/]);
  // Not JSON, not an object, a wrong type.
  await assertProblem(await patchTenant(t, owner.auth, '{"name":'), 400, 'validation_failed');
  await assertFields(await patchTenant(t, owner.auth, { name: 42 }), [/name$/]);
  await assertFields(await patchTenant(t, owner.auth, { branding: 'dark' }), [/branding$/]);
  await assertFields(await patchTenant(t, owner.auth, { branding: { logo_file_id: 'not-a-uuid' } }), [/logo_file_id$/]);
  // Nothing to change is an error too.
  await assertProblem(await patchTenant(t, owner.auth, {}), 400, 'validation_failed');
  // Limits are the platform's to set, not the tenant owner's (contract silent: refused either
  // as an invalid member or as forbidden; never applied).
  const limits = await patchTenant(t, owner.auth, { limits: { max_members: 1000, ai_monthly_tokens: 1e12 } });
  assert.ok([400, 403].includes(limits.status), `an owner raising their own limits: ${limits.status} ${await limits.text()}`);
  // A logo must be a ready image of this tenant: a pending upload and an unknown id are not.
  const up = await json(await api(t, '/v1/uploads', {
    method: 'POST', auth: owner.auth, body: { filename: 'logo.png', content_type: 'image/png', size: 100 },
  }), 201);
  await assertProblem(await patchTenant(t, owner.auth, { branding: { logo_file_id: up.file.id } }), 422, 'image_not_ready');
  await assertProblem(await patchTenant(t, owner.auth, { branding: { logo_file_id: randomUUID() } }), 422, 'image_not_ready');
  const after = await getTenant(t, owner.auth);
  assert.equal(after.doc.version, before.version);
  assert.equal(after.etag, '"v1"');
  assert.equal(after.doc.name, before.name);
  assert.deepEqual(after.doc.settings, before.settings);
});

test('a ready image becomes the logo', async () => {
  const { t, owner } = await tenantWithOwner();
  const png = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex');
  const up = await json(await api(t, '/v1/uploads', {
    method: 'POST', auth: owner.auth, body: { filename: 'logo.png', content_type: 'image/png', size: png.length },
  }), 201);
  const put = await fetch(up.upload.put.url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: png });
  assert.equal(put.status, 200, await put.text());
  await json(await api(t, `/v1/uploads/${up.file.id}/complete`, { method: 'POST', auth: owner.auth }), 200);
  const doc = await json(await patchTenant(t, owner.auth, { branding: { logo_file_id: up.file.id } }), 200);
  assert.equal(doc.settings.branding.logo_file_id, up.file.id);
  // Another tenant cannot use it.
  const { t: u, owner: uOwner } = await tenantWithOwner();
  await assertProblem(await patchTenant(u, uOwner.auth, { branding: { logo_file_id: up.file.id } }), 422, 'image_not_ready');
});

// --- custom domains --------------------------------------------------------------------

test('custom domains: pending does not route; verified through DNS TXT routes; taken by another tenant → 409; DELETE stops routing', async () => {
  const { t, owner } = await tenantWithOwner();
  const admin = await member(t, 'admin');
  const hostname = `shop-${runtime}-${rand()}.example.test`;
  const challenge = `_edgefront-challenge.${hostname}`;
  // Unknown host (and now negatively cached).
  await assertProblem(await onHost(hostname, '/v1/storefront'), 404, 'tenant_not_found');

  await assertProblem(await api(t, '/v1/tenant/domains', { method: 'POST', auth: admin.auth, body: { hostname } }), 403, 'insufficient_role');
  const added = await json(await api(t, '/v1/tenant/domains', { method: 'POST', auth: owner.auth, body: { hostname: hostname.toUpperCase() } }), 201);
  assert.equal(added.hostname, hostname);
  assert.equal(added.status, 'pending');
  assert.equal(added.verified_at, null);
  assert.match(added.created_at, ISO);
  assert.equal(added.verification.type, 'TXT');
  assert.equal(added.verification.name, challenge);
  assert.match(added.verification.value, /^edgefront-verify=\S{16,}$/);
  // Adding it again: the same pending claim (contract: `exists {domain}`; the status is silent).
  const twice = await api(t, '/v1/tenant/domains', { method: 'POST', auth: owner.auth, body: { hostname } });
  assert.ok([200, 201].includes(twice.status), `re-adding: ${twice.status}`);
  assert.equal((await twice.json()).verification.value, added.verification.value);

  // Pending: does not route.
  await assertProblem(await onHost(hostname, '/v1/storefront'), 404, 'tenant_not_found');
  const listed = await json(await api(t, '/v1/tenant/domains', { auth: admin.auth }), 200);
  const domains = listed.items ?? listed; // (contract silent: a list or a page)
  assert.deepEqual(domains.map((d) => [d.hostname, d.status]), [[hostname, 'pending']]);

  // No record, then a wrong one: 422, still pending.
  await setTxt(challenge, []);
  const verify = () => api(t, `/v1/tenant/domains/${hostname}/verify`, { method: 'POST', auth: owner.auth });
  await assertProblem(await verify(), 422, 'domain_not_verified');
  await setTxt(challenge, ['edgefront-verify=wrong', 'v=spf1 -all']);
  await assertProblem(await verify(), 422, 'domain_not_verified');
  await assertProblem(await onHost(hostname, '/v1/storefront'), 404, 'tenant_not_found');
  // Only the owner verifies.
  await assertProblem(await api(t, `/v1/tenant/domains/${hostname}/verify`, { method: 'POST', auth: admin.auth }), 403, 'insufficient_role');

  // The right value among others: verified, and it routes on the very next request.
  await setTxt(challenge, ['v=spf1 -all', added.verification.value]);
  const verified = await json(await verify(), 200);
  assert.equal(verified.status, 'verified');
  assert.match(verified.verified_at, ISO);
  const profile = await json(await onHost(hostname, '/v1/storefront'), 200);
  assert.equal(profile.slug, t.slug);
  const who = await json(await onHost(hostname, '/v1/me', { auth: owner.auth }), 200);
  assert.equal(who.tenant.id, t.id);
  // Verifying again is harmless.
  assert.equal((await json(await verify(), 200)).status, 'verified');
  assert.equal((await getTenant(t, owner.auth)).doc.domains[0].status, 'verified');

  // Another tenant cannot claim a verified hostname.
  const { t: u, owner: uOwner } = await tenantWithOwner();
  await assertProblem(await api(u, '/v1/tenant/domains', { method: 'POST', auth: uOwner.auth, body: { hostname } }), 409, 'domain_taken');
  // Unknown hostname for this tenant: 404.
  await assertProblem(await api(u, `/v1/tenant/domains/${hostname}/verify`, { method: 'POST', auth: uOwner.auth }), 404, 'not_found');

  // Settings changes reach the custom domain's cached record too.
  await json(await patchTenant(t, owner.auth, { name: 'Domain Shop' }), 200);
  assert.equal((await json(await onHost(hostname, '/v1/storefront'), 200)).name, 'Domain Shop');

  // DELETE: stops routing on the next request.
  await assertProblem(await api(t, `/v1/tenant/domains/${hostname}`, { method: 'DELETE', auth: admin.auth }), 403, 'insufficient_role');
  const del = await api(t, `/v1/tenant/domains/${hostname}`, { method: 'DELETE', auth: owner.auth });
  assert.equal(del.status, 204, await del.text());
  await assertProblem(await onHost(hostname, '/v1/storefront'), 404, 'tenant_not_found');
  await assertProblem(await api(t, `/v1/tenant/domains/${hostname}`, { method: 'DELETE', auth: owner.auth }), 404, 'not_found');
  // Freed: the other tenant may now claim it.
  assert.equal((await api(u, '/v1/tenant/domains', { method: 'POST', auth: uOwner.auth, body: { hostname } })).status, 201);
  await setTxt(challenge, []);
});

test('two pending claims of one hostname: the first to verify wins, the other gets 409 domain_taken', async () => {
  const { t, owner } = await tenantWithOwner();
  const { t: u, owner: uOwner } = await tenantWithOwner();
  const hostname = `race-${runtime}-${rand()}.example.test`;
  const challenge = `_edgefront-challenge.${hostname}`;
  const a = await json(await api(t, '/v1/tenant/domains', { method: 'POST', auth: owner.auth, body: { hostname } }), 201);
  const b = await json(await api(u, '/v1/tenant/domains', { method: 'POST', auth: uOwner.auth, body: { hostname } }), 201);
  assert.notEqual(a.verification.value, b.verification.value, 'each claim has its own token');
  // Both records published (a shared DNS zone): whoever verifies first holds the name.
  await setTxt(challenge, [a.verification.value, b.verification.value]);
  assert.equal((await json(await api(t, `/v1/tenant/domains/${hostname}/verify`, { method: 'POST', auth: owner.auth }), 200)).status, 'verified');
  await assertProblem(await api(u, `/v1/tenant/domains/${hostname}/verify`, { method: 'POST', auth: uOwner.auth }), 409, 'domain_taken');
  assert.equal((await json(await onHost(hostname, '/v1/storefront'), 200)).slug, t.slug);
  await setTxt(challenge, []);
});

test('POST /v1/tenant/domains: invalid hostnames are named fields and nothing is added', async () => {
  const { t, owner } = await tenantWithOwner();
  // (contract silent on the last three: the base domain and its subdomains, the platform host
  // among them, are ours; no tenant may claim them.)
  for (const hostname of ['not a host', 'http://shop.example.test', 'shop..example.test', '-bad.example.test', 'x'.repeat(64) + '.example.test', '',
    stack.base_domain, `x-${rand()}.${stack.base_domain}`, stack.platform_host]) {
    await assertFields(await api(t, '/v1/tenant/domains', { method: 'POST', auth: owner.auth, body: { hostname } }), ['hostname']);
  }
  await assertFields(await api(t, '/v1/tenant/domains', { method: 'POST', auth: owner.auth, body: {} }), ['hostname']);
  await assertFields(await api(t, '/v1/tenant/domains', { method: 'POST', auth: owner.auth, body: { hostname: 'ok.example.test', extra: 1 } }), ['extra']);
  const listed = await json(await api(t, '/v1/tenant/domains', { auth: owner.auth }), 200);
  assert.deepEqual(listed.items ?? listed, []);
});

// --- usage -----------------------------------------------------------------------------

test('GET /v1/usage: numbers that move', async () => {
  const { t, owner } = await tenantWithOwner({ tier: 'basic' });
  const admin = await member(t, 'admin');
  const m = await member(t, 'member');
  const usage = async () => json(await api(t, '/v1/usage', { auth: m.auth }), 200);
  const u0 = await usage();
  assert.match(u0.period.start, /^\d{4}-\d{2}-\d{2}T/);
  assert.match(u0.period.end, /^\d{4}-\d{2}-\d{2}T/);
  assert.ok(Date.parse(u0.period.start) <= Date.now() && Date.now() < Date.parse(u0.period.end));
  for (const k of ['ai_tokens', 'catalog_items', 'orders', 'storage_bytes', 'members']) {
    assert.ok(u0[k] && typeof u0[k].used === 'number', `${k}: ${JSON.stringify(u0[k])}`);
    assert.ok(u0[k].limit === null || typeof u0[k].limit === 'number', `${k}.limit`);
  }
  assert.equal(u0.storage_bytes.limit, 1024 * 1024 * 1024, 'basic tier: 1 GiB stored');
  assert.equal(u0.catalog_items.used, 0);
  assert.equal(u0.members.used, 3);
  assert.equal(u0.members.limit, 5, 'basic tier: 5 members');
  assert.equal(u0.invitations_pending, 0);

  assert.equal((await newItem(t, admin.auth)).status, 201);
  await invited(t, owner.auth, `usage-${rand()}@example.test`);
  const u1 = await usage();
  assert.equal(u1.catalog_items.used, u0.catalog_items.used + 1);
  assert.equal(u1.invitations_pending, 1);
  assert.equal(u1.members.used, 3);
  // The admin who created the item sees the same numbers.
  assert.equal((await json(await api(t, '/v1/usage', { auth: admin.auth }), 200)).catalog_items.used, 1);

  // settings.limits overrides the tier's limit.
  const big = await createTenant({ settings: { limits: { max_members: 9 } } });
  const bigOwner = await member(big, 'owner');
  assert.equal((await json(await api(big, '/v1/usage', { auth: bigOwner.auth }), 200)).members.limit, 9);
  // Not for strangers.
  await assertProblem(await api(t, '/v1/usage', { auth: (await signedIn()).auth }), 403, 'not_a_member');
});

// --- every write validates its body ----------------------------------------------------

test('membership writes reject bad input with a field list and change nothing', async () => {
  const { t, owner } = await tenantWithOwner();
  const m = await member(t, 'member');
  await assertFields(await api(t, '/v1/members/invitations', { method: 'POST', auth: owner.auth, body: { email: 'not-an-email', role: 'boss' } }), ['email', 'role']);
  await assertFields(await api(t, '/v1/members/invitations', { method: 'POST', auth: owner.auth, body: {} }), ['email', 'role']);
  await assertFields(await api(t, '/v1/members/invitations', { method: 'POST', auth: owner.auth, body: { email: `ok-${rand()}@example.test`, role: 'member', expires: 3 } }), ['expires']);
  await assertProblem(await api(t, '/v1/members/invitations', { method: 'POST', auth: owner.auth, body: '[1,' }), 400, 'validation_failed');
  assert.deepEqual(await pendingInvitations(t, owner.auth), []);

  await assertFields(await setRole(t, owner.auth, m.userId, 'king'), ['role']);
  await assertFields(await api(t, `/v1/members/${m.userId}`, { method: 'PATCH', auth: owner.auth, body: {} }), ['role']);
  await assertFields(await api(t, `/v1/members/${m.userId}`, { method: 'PATCH', auth: owner.auth, body: { role: 'admin', email: 'x@y.z' } }), ['email']);
  const bad = await api(t, '/v1/members/not-a-uuid', { method: 'PATCH', auth: owner.auth, body: { role: 'admin' } });
  assert.ok([400, 404].includes(bad.status), `a malformed member id: ${bad.status}`);
  assert.equal(roleOf(await json(await me(t, m.auth), 200)), 'member');
  // The accept path's token is checked before any lookup (contract silent: 400 or 404).
  const weird = await accept(t, m.auth, 'not%20a%20token');
  assert.ok([400, 404].includes(weird.status), `a malformed token: ${weird.status}`);
});
