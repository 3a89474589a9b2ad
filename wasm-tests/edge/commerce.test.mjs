// Commerce (issue 11), black-box against one runtime: visits and attribution, checkout with
// idempotency and inventory, donations, order transitions, reports and the outbox. Written
// against the contract (request/response shapes, codes, outcomes); each test makes its own
// tenants, so runtimes and reruns never share rows. Where the contract is silent, a test
// asserts what a demanding API client expects and says so in a comment marked "(contract
// silent)".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { adminDb, api, assertProblem, bearer, createTenant, runtime, sqlStats, stack } from './stack.mjs';

// The same SQL path createTenant uses: the Neon driver through our proxy, as the superuser
// (which reads every tenant's rows, so fixtures and checks see what the API wrote).
const db = adminDb;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/; // public.iso_utc
const MONEY = /^\d+\.\d{3}$/; // numeric(12,3)::text
const ORDER_KEYS = [
  'created_at', 'currency', 'customer', 'id', 'kind', 'lines', 'number', 'shipping_address',
  'status', 'subtotal', 'total', 'updated_at', 'version', 'visit_id',
];
const customer = { email: 'ada@example.com', name: 'Ada Lovelace' };
const address = { line1: '1 Market Street', city: 'Berlin', postal_code: '10115', country: 'DE' };

// --- helpers ---------------------------------------------------------------------------

/** An active catalog item, created by an admin through the API. */
async function newItem(t, admin, over = {}) {
  const body = { sku: `SKU-${randomUUID().slice(0, 8)}`, name: 'Blue mug', price: '12.5', inventory: 10, status: 'active', ...over };
  const res = await api(t, '/v1/catalog', { method: 'POST', auth: admin, body });
  const doc = await res.json();
  assert.equal(res.status, 201, JSON.stringify(doc));
  return doc;
}

async function inventory(t, admin, id) {
  const res = await api(t, `/v1/catalog/${id}`, { auth: admin });
  const doc = await res.json();
  assert.equal(res.status, 200, JSON.stringify(doc));
  return doc.inventory;
}

/** The `name=value` of a response's visitor cookie (null when none was set). */
function cookieOf(res) {
  const set = res.headers.get('set-cookie');
  if (!set) return null;
  assert.match(set, /^ef_visitor=[0-9a-f-]{36}\.[A-Za-z0-9_-]+;/);
  return set.split(';')[0];
}

function postVisit(t, body, cookie) {
  return api(t, '/v1/storefront/visits', { method: 'POST', body, headers: cookie ? { cookie } : {} });
}

/** Records a visit; returns `{id, created_at, cookie}` (the cookie sent, or the one set). */
async function visit(t, body = { path: '/' }, cookie) {
  const res = await postVisit(t, body, cookie);
  const doc = await res.json();
  assert.equal(res.status, 201, JSON.stringify(doc));
  assert.match(doc.id, UUID);
  assert.match(doc.created_at, ISO);
  return { ...doc, cookie: cookie ?? cookieOf(res) };
}

/** A visitor cookie for a fresh visitor (by recording one visit). */
async function newVisitor(t) {
  const v = await visit(t, { path: '/' });
  assert.ok(v.cookie, 'a new visitor gets Set-Cookie');
  return v.cookie;
}

/** POST /v1/storefront/checkout; `key: null` sends no Idempotency-Key. */
function checkout(t, body, { key = randomUUID(), cookie, headers = {} } = {}) {
  const h = { ...headers };
  if (key !== null) h['idempotency-key'] = key;
  if (cookie) h.cookie = cookie;
  return api(t, '/v1/storefront/checkout', { method: 'POST', body, headers: h });
}

async function placed(t, body, opts) {
  const res = await checkout(t, body, opts);
  const doc = await res.json();
  assert.equal(res.status, 201, JSON.stringify(doc));
  return { res, doc };
}

const order = (lines, over = {}) => ({ items: lines.map(([item, quantity]) => ({ item_id: item.id, quantity })), customer, ...over });

async function listOrders(t, auth, query = '') {
  const all = [];
  let cursor = null;
  for (let pages = 0; pages < 50; pages++) {
    const sep = query ? '&' : '';
    const res = await api(t, `/v1/orders?limit=100${sep}${query}${cursor ? `&cursor=${cursor}` : ''}`, { auth });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    all.push(...body.items);
    cursor = body.next_cursor;
    if (!cursor) return all;
  }
  throw new Error('pagination did not end');
}

function patch(t, id, auth, body, ifMatch) {
  return api(t, `/v1/orders/${id}`, { method: 'PATCH', auth, body, headers: ifMatch ? { 'if-match': ifMatch } : {} });
}

async function transitioned(t, id, auth, status, ifMatch) {
  const res = await patch(t, id, auth, { status }, ifMatch);
  const doc = await res.json();
  assert.equal(res.status, 200, `→ ${status}: ${JSON.stringify(doc)}`);
  assert.equal(doc.status, status);
  return { res, doc };
}

async function refusedTransition(t, id, auth, status, from, allowed) {
  const p = await assertProblem(await patch(t, id, auth, { status }), 409, 'invalid_transition');
  assert.equal(p.from, from, `${from} → ${status}`);
  assert.deepEqual([...p.allowed].sort(), [...allowed].sort(), `${from} → ${status}`);
}

async function outbox(t) {
  return db.query(
    'SELECT event, order_id::text AS order_id, payload, delivered_at FROM outbox WHERE tenant_id = $1 ORDER BY created_at',
    [t.id],
  );
}

const fieldsOf = (p) => (p.errors ?? []).map((e) => e.field);
const iso = (ms) => encodeURIComponent(new Date(ms).toISOString());
const range = () => `from=${iso(Date.now() - 3_600_000)}&to=${iso(Date.now() + 3_600_000)}`;

/** A document of an order per the contract; `lines` compared exactly. */
function assertOrder(doc, { kind = 'order', status = 'pending', currency = 'EUR', total, lines, visit_id = null, cust = customer }) {
  assert.deepEqual(Object.keys(doc).sort(), ORDER_KEYS, 'exactly the contract members (no visitor_id, key or hash)');
  assert.match(doc.id, UUID);
  assert.ok(Number.isInteger(doc.number) && doc.number >= 1001, String(doc.number));
  assert.equal(doc.kind, kind);
  assert.equal(doc.status, status);
  assert.equal(doc.currency, currency);
  assert.equal(doc.subtotal, total);
  assert.equal(doc.total, total);
  assert.deepEqual(doc.customer, cust);
  assert.equal(doc.visit_id, visit_id);
  assert.deepEqual(doc.lines, lines);
  assert.equal(doc.version, 1);
  assert.match(doc.created_at, ISO);
  assert.match(doc.updated_at, ISO);
}

const itemLine = (line, item, unit_price, quantity, line_total) => ({
  line, kind: 'item', item_id: item.id, sku: item.sku, name: item.name, unit_price, quantity, line_total, campaign: null,
});

// --- tests -----------------------------------------------------------------------------

test('checkout: a visit with UTM, an order priced from the catalog, readable by its visitor and the admins', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  const mug = await newItem(t, admin, { name: 'Blue mug', price: '12.5', inventory: 10 });
  const hat = await newItem(t, admin, { name: 'Wool hat', price: '30', inventory: 3 });

  const v = await postVisit(t, { path: '/products/blue-mug', referrer: 'https://news.example/', utm_source: 'newsletter', utm_medium: 'email', utm_campaign: 'spring' });
  const vdoc = await v.json();
  assert.equal(v.status, 201, JSON.stringify(vdoc));
  assert.match(vdoc.id, UUID);
  assert.match(vdoc.created_at, ISO);
  const cookie = cookieOf(v);
  assert.ok(cookie, 'a first storefront POST without a cookie sets one');

  const body = order([[mug, 2], [hat, 1]], { shipping_address: address, visit_id: vdoc.id });
  const { res, doc } = await placed(t, body, { cookie });
  assert.equal(res.headers.get('location'), `/v1/storefront/orders/${doc.id}`);
  assert.equal(res.headers.get('idempotent-replayed'), null);
  assert.equal(res.headers.get('set-cookie'), null, 'a valid cookie is kept');
  // (contract silent) someone's own order is never stored by shared caches.
  assert.match(res.headers.get('cache-control') ?? 'no-store', /^(private|no-store)/);
  assertOrder(doc, {
    total: '55.000',
    visit_id: vdoc.id,
    // (contract silent) lines are numbered in request order.
    lines: [itemLine(1, mug, '12.500', 2, '25.000'), itemLine(2, hat, '30.000', 1, '30.000')],
  });
  // (contract silent) the first order of a tenant is number 1001 exactly.
  assert.equal(doc.number, 1001);
  // (contract silent) the address comes back as sent (absent optional members may read null).
  for (const [k, val] of Object.entries(address)) assert.equal(doc.shipping_address[k], val, k);
  assert.equal(await inventory(t, admin, mug.id), 8);
  assert.equal(await inventory(t, admin, hat.id), 2);

  // The visitor reads their order with their cookie; nobody else can.
  const mine = await api(t, `/v1/storefront/orders/${doc.id}`, { headers: { cookie } });
  assert.equal(mine.status, 200);
  assert.deepEqual(await mine.json(), doc);
  assert.match(mine.headers.get('cache-control') ?? 'no-store', /^(private|no-store)/);
  await assertProblem(await api(t, `/v1/storefront/orders/${doc.id}`), 404, 'not_found');
  const stranger = await newVisitor(t);
  await assertProblem(await api(t, `/v1/storefront/orders/${doc.id}`, { headers: { cookie: stranger } }), 404, 'not_found');
  const forged = cookie.replace(/\.[^.]+$/, '.AAAAAAAAAAAAAAAAAAAAAA');
  await assertProblem(await api(t, `/v1/storefront/orders/${doc.id}`, { headers: { cookie: forged } }), 404, 'not_found');
  await assertProblem(await api(t, `/v1/storefront/orders/${randomUUID()}`, { headers: { cookie } }), 404, 'not_found');

  // Admins and members see it.
  const listed = await listOrders(t, admin);
  assert.deepEqual(listed, [doc]);
  const member = await bearer(t, 'member');
  const got = await api(t, `/v1/orders/${doc.id}`, { auth: member });
  assert.equal(got.status, 200);
  assert.equal(got.headers.get('etag'), '"v1"');
  assert.deepEqual(await got.json(), doc);
  await assertProblem(await api(t, '/v1/orders'), 401, 'missing_token');
  await assertProblem(await api(t, `/v1/orders/${doc.id}`), 401, 'missing_token');

  // A checkout without a cookie makes a new visitor, who owns that order.
  const anon = await checkout(t, order([[mug, 1]]));
  const anonDoc = await anon.json();
  assert.equal(anon.status, 201, JSON.stringify(anonDoc));
  assert.equal(anonDoc.number, 1002);
  assert.equal(anonDoc.visit_id, null);
  const anonCookie = cookieOf(anon);
  assert.ok(anonCookie, 'a new visitor checking out gets Set-Cookie');
  assert.equal((await api(t, `/v1/storefront/orders/${anonDoc.id}`, { headers: { cookie: anonCookie } })).status, 200);
  await assertProblem(await api(t, `/v1/storefront/orders/${anonDoc.id}`, { headers: { cookie } }), 404, 'not_found');
});

test('client-sent prices are refused, nothing is written, and a clean request is priced from the catalog', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  const mug = await newItem(t, admin, { price: '12.5', inventory: 4 });
  const hat = await newItem(t, admin, { price: '30', inventory: 4 });
  const key = randomUUID();
  const before = (await sqlStats()).sql_batches;
  const cheat = {
    items: [{ item_id: mug.id, quantity: 1, price: '0.01' }, { item_id: hat.id, quantity: 1, unit_price: '0.01' }],
    customer,
    total: '0.02',
  };
  const p = await assertProblem(await checkout(t, cheat, { key }), 400, 'validation_failed');
  for (const field of ['items[0].price', 'items[1].unit_price', 'total']) {
    const e = p.errors.find((x) => x.field === field);
    assert.ok(e, `${field} not named: ${JSON.stringify(p.errors)}`);
    assert.equal(e.code, 'unknown_field');
  }
  // (contract silent, as for the catalog) shape errors are decided at the edge: no SQL at all.
  assert.equal((await sqlStats()).sql_batches, before);
  assert.equal(await inventory(t, admin, mug.id), 4);
  assert.deepEqual(await listOrders(t, admin), []);
  // The refused request did not consume the key: the same key now creates (not replays).
  const { res, doc } = await placed(t, order([[mug, 1], [hat, 1]]), { key });
  assert.equal(res.headers.get('idempotent-replayed'), null);
  assert.deepEqual(doc.lines.map((l) => [l.unit_price, l.line_total]), [['12.500', '12.500'], ['30.000', '30.000']]);
  assert.equal(doc.total, '42.500');
  // A price change later does not reprice an existing order.
  const up = await api(t, `/v1/catalog/${mug.id}`, { method: 'PATCH', auth: admin, body: { price: '99' } });
  assert.equal(up.status, 200);
  const again = await (await api(t, `/v1/orders/${doc.id}`, { auth: admin })).json();
  assert.equal(again.total, '42.500');
});

test('30 concurrent checkouts of an item with 5 in stock: exactly 5 orders, 25 out_of_stock', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  const item = await newItem(t, admin, { price: '10', inventory: 5 });
  await api(t, '/v1/orders', { auth: admin }); // warm the tenant and key caches
  const results = await Promise.all(Array.from({ length: 30 }, () => checkout(t, order([[item, 1]]))));
  const docs = await Promise.all(results.map((r) => r.json()));
  const statuses = results.map((r) => r.status).sort();
  assert.deepEqual(statuses, [...Array(5).fill(201), ...Array(25).fill(409)], JSON.stringify(docs.filter((d, i) => ![201, 409].includes(results[i].status))));
  for (const [i, r] of results.entries()) {
    if (r.status !== 409) continue;
    assert.equal(r.headers.get('content-type'), 'application/problem+json');
    assert.equal(docs[i].code, 'out_of_stock');
    assert.deepEqual(docs[i].items, [{ item_id: item.id, requested: 1, available: 0 }]);
  }
  const made = docs.filter((_, i) => results[i].status === 201);
  assert.equal(await inventory(t, admin, item.id), 0);
  const listed = await listOrders(t, admin);
  assert.equal(listed.length, 5);
  assert.deepEqual(listed.map((o) => o.id).sort(), made.map((o) => o.id).sort());
  // Refusals write nothing, not even an order number: the five have 1001..1005.
  assert.deepEqual(listed.map((o) => o.number).sort(), [1001, 1002, 1003, 1004, 1005]);
  // Newest first.
  assert.deepEqual(listed.map((o) => o.number), [1005, 1004, 1003, 1002, 1001]);

  // Asking for more than is left names every short item with what is available.
  const other = await newItem(t, admin, { price: '1', inventory: 2 });
  const short = await assertProblem(await checkout(t, order([[other, 3], [item, 1]])), 409, 'out_of_stock');
  const byId = Object.fromEntries(short.items.map((x) => [x.item_id, x]));
  assert.deepEqual(byId, {
    [other.id]: { item_id: other.id, requested: 3, available: 2 },
    [item.id]: { item_id: item.id, requested: 1, available: 0 },
  });
  assert.equal(await inventory(t, admin, other.id), 2, 'a refused order takes nothing');
});

test('Idempotency-Key: concurrent retries create once, others replay; another body conflicts; the key is required', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  // One in stock: a replay after the item sold out is still a replay, not out_of_stock.
  const item = await newItem(t, admin, { price: '7', inventory: 1 });
  const spare = await newItem(t, admin, { price: '3', inventory: 5 });
  const cookie = await newVisitor(t);
  const key = randomUUID();
  const body = order([[item, 1]], { shipping_address: address });
  const results = await Promise.all(Array.from({ length: 5 }, () => checkout(t, body, { key, cookie })));
  const docs = await Promise.all(results.map((r) => r.json()));
  assert.deepEqual(results.map((r) => r.status), Array(5).fill(201), JSON.stringify(docs));
  const replayed = results.map((r) => r.headers.get('idempotent-replayed'));
  assert.equal(replayed.filter((h) => h === null).length, 1, replayed.join(','));
  assert.equal(replayed.filter((h) => h === 'true').length, 4, replayed.join(','));
  assert.equal(new Set(docs.map((d) => d.id)).size, 1);
  for (const d of docs) assert.deepEqual(d, docs[0]);
  for (const r of results) assert.equal(r.headers.get('location'), `/v1/storefront/orders/${docs[0].id}`);
  assert.equal((await listOrders(t, admin)).length, 1);
  assert.equal(await inventory(t, admin, item.id), 0, 'inventory taken once');

  // (contract silent, as for the catalog) the key is bound to what the body means, not its
  // bytes: other member order is the same request.
  const reordered = { shipping_address: { ...address }, customer: { name: customer.name, email: customer.email }, items: [{ quantity: 1, item_id: item.id }] };
  const again = await checkout(t, reordered, { key, cookie });
  assert.equal(again.status, 201, await again.text());
  assert.equal(again.headers.get('idempotent-replayed'), 'true');

  // The same key with another body: a conflict, and nothing is taken.
  await assertProblem(await checkout(t, order([[spare, 1]]), { key, cookie }), 409, 'idempotency_key_reused');
  await assertProblem(await checkout(t, order([[item, 1]], { customer: { ...customer, name: 'Eve' } }), { key, cookie }), 409, 'idempotency_key_reused');
  assert.equal(await inventory(t, admin, spare.id), 5);
  assert.equal((await listOrders(t, admin)).length, 1);

  // Without a key (or with an empty one): 400 naming the header, nothing written.
  for (const k of [null, '']) {
    const p = await assertProblem(await checkout(t, order([[spare, 1]]), { key: k, cookie }), 400, 'validation_failed');
    assert.ok(fieldsOf(p).includes('Idempotency-Key'), JSON.stringify(p));
  }
  assert.equal(await inventory(t, admin, spare.id), 5);
  assert.equal((await listOrders(t, admin)).length, 1);
  // Keys are per tenant: the same key on another tenant is a new order there.
  const u = await createTenant();
  const uItem = await newItem(u, await bearer(u, 'admin'), { inventory: 1 });
  const { res } = await placed(u, order([[uItem, 1]]), { key });
  assert.equal(res.headers.get('idempotent-replayed'), null);
});

test('transitions: the allowed path with ETags, every illegal one refused, cancel gives inventory back once', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  const member = await bearer(t, 'member');
  const item = await newItem(t, admin, { price: '5', inventory: 10 });
  const a = (await placed(t, order([[item, 3]]))).doc;
  assert.equal(await inventory(t, admin, item.id), 7);

  await assertProblem(await patch(t, a.id, member, { status: 'confirmed' }), 403, 'insufficient_role');
  await assertProblem(await patch(t, a.id, undefined, { status: 'confirmed' }), 401, 'missing_token');
  // (contract silent) a status that does not exist, or other members, are 400s naming them.
  const bad = await assertProblem(await patch(t, a.id, admin, { status: 'lost' }), 400, 'validation_failed');
  assert.ok(fieldsOf(bad).includes('status'), JSON.stringify(bad));
  const extra = await assertProblem(await patch(t, a.id, admin, { status: 'confirmed', total: '0' }), 400, 'validation_failed');
  assert.ok(fieldsOf(extra).includes('total'), JSON.stringify(extra));
  await assertProblem(await patch(t, randomUUID(), admin, { status: 'confirmed' }), 404, 'not_found');

  // Illegal from pending; the same status is illegal too.
  await refusedTransition(t, a.id, admin, 'shipped', 'pending', ['confirmed', 'cancelled']);
  await refusedTransition(t, a.id, admin, 'delivered', 'pending', ['confirmed', 'cancelled']);
  await refusedTransition(t, a.id, admin, 'pending', 'pending', ['confirmed', 'cancelled']);

  const c = await transitioned(t, a.id, admin, 'confirmed', '"v1"');
  assert.equal(c.doc.version, 2);
  assert.equal(c.res.headers.get('etag'), '"v2"');
  assert.ok(c.doc.updated_at >= a.updated_at);
  assert.equal(c.doc.created_at, a.created_at);
  assert.equal(c.doc.number, a.number);
  // A writer holding the old version loses.
  const stale = await assertProblem(await patch(t, a.id, admin, { status: 'cancelled' }, '"v1"'), 412, 'precondition_failed');
  // (contract silent) as for catalog items, the 412 names the current tag.
  assert.equal(stale.current_etag, '"v2"');
  await refusedTransition(t, a.id, admin, 'pending', 'confirmed', ['shipped', 'cancelled']);
  await refusedTransition(t, a.id, admin, 'delivered', 'confirmed', ['shipped', 'cancelled']);
  const s = await transitioned(t, a.id, admin, 'shipped', '"v2"');
  assert.equal(s.res.headers.get('etag'), '"v3"');
  await refusedTransition(t, a.id, admin, 'cancelled', 'shipped', ['delivered']);
  await refusedTransition(t, a.id, admin, 'confirmed', 'shipped', ['delivered']);
  const d = await transitioned(t, a.id, admin, 'delivered');
  assert.equal(d.doc.version, 4);
  assert.equal(d.res.headers.get('etag'), '"v4"');
  for (const to of ['pending', 'confirmed', 'shipped', 'cancelled', 'delivered']) {
    await refusedTransition(t, a.id, admin, to, 'delivered', []);
  }
  const final = await api(t, `/v1/orders/${a.id}`, { auth: member });
  assert.equal(final.headers.get('etag'), '"v4"');
  assert.equal((await final.json()).status, 'delivered');
  assert.equal(await inventory(t, admin, item.id), 7, 'delivery gives nothing back');

  // Cancel from pending: inventory back exactly once.
  const b = (await placed(t, order([[item, 2]]))).doc;
  assert.equal(await inventory(t, admin, item.id), 5);
  const x = await transitioned(t, b.id, admin, 'cancelled', '"v1"');
  assert.equal(x.doc.version, 2);
  assert.equal(await inventory(t, admin, item.id), 7);
  await refusedTransition(t, b.id, admin, 'cancelled', 'cancelled', []);
  await refusedTransition(t, b.id, admin, 'confirmed', 'cancelled', []);
  await refusedTransition(t, b.id, admin, 'pending', 'cancelled', []);
  assert.equal(await inventory(t, admin, item.id), 7, 'a second cancel gives nothing back');
  // Cancel from confirmed gives back too.
  const e = (await placed(t, order([[item, 4]]))).doc;
  await transitioned(t, e.id, admin, 'confirmed');
  assert.equal(await inventory(t, admin, item.id), 3);
  await transitioned(t, e.id, admin, 'cancelled');
  assert.equal(await inventory(t, admin, item.id), 7);
  // The visitor's view follows the order (same document).
  const owner = await newVisitor(t);
  const f = (await placed(t, order([[item, 1]]), { cookie: owner })).doc;
  const fc = (await transitioned(t, f.id, admin, 'confirmed')).doc;
  assert.deepEqual(await (await api(t, `/v1/storefront/orders/${f.id}`, { headers: { cookie: owner } })).json(), fc);

  // Unlimited inventory (NULL) is never taken and never given back.
  const free = await newItem(t, admin, { price: '1', inventory: 0 });
  await db.query('UPDATE catalog_items SET inventory = NULL WHERE tenant_id = $1 AND id = $2', [t.id, free.id]);
  const g = (await placed(t, order([[free, 1000]]))).doc;
  assert.equal(g.total, '1000.000');
  await transitioned(t, g.id, admin, 'cancelled');
  const [row] = await db.query('SELECT inventory FROM catalog_items WHERE tenant_id = $1 AND id = $2', [t.id, free.id]);
  assert.equal(row.inventory, null);
});

test("isolation: another tenant's orders are 404, its tokens 403, its visits never attributed", async () => {
  const a = await createTenant();
  const b = await createTenant();
  const adminA = await bearer(a, 'admin');
  const adminB = await bearer(b, 'admin');
  const itemA = await newItem(a, adminA, { inventory: 5 });
  const itemB = await newItem(b, adminB, { inventory: 5 });
  const va = await visit(a, { path: '/', utm_source: 'a-only' });
  const x = (await placed(a, order([[itemA, 1]], { visit_id: va.id }), { cookie: va.cookie })).doc;

  for (const [method, body] of [['GET'], ['PATCH', { status: 'cancelled' }]]) {
    const p = await assertProblem(await api(b, `/v1/orders/${x.id}`, { method, auth: adminB, body }), 404, 'not_found');
    assert.ok(!JSON.stringify(p).includes(customer.email));
  }
  // A's visitor cookie means nothing on B.
  await assertProblem(await api(b, `/v1/storefront/orders/${x.id}`, { headers: { cookie: va.cookie } }), 404, 'not_found');
  await assertProblem(await api(b, '/v1/orders', { auth: adminA }), 403, 'not_a_member');
  await assertProblem(await api(b, `/v1/orders/${x.id}`, { auth: adminA }), 403, 'not_a_member');
  await assertProblem(await patch(b, x.id, adminA, { status: 'cancelled' }), 403, 'not_a_member');
  await assertProblem(await api(b, `/v1/orders/summary?${range()}`, { auth: adminA }), 403, 'not_a_member');
  await assertProblem(await api(b, `/v1/analytics/visits?${range()}`, { auth: adminA }), 403, 'not_a_member');
  // A's item cannot be bought on B.
  const cross = await assertProblem(await checkout(b, order([[itemA, 1]])), 422, 'item_unavailable');
  assert.deepEqual(cross.items, [itemA.id]);
  assert.equal(await inventory(a, adminA, itemA.id), 4);
  // A visit of A referenced on B (or one that does not exist) is dropped, not an error.
  const y = (await placed(b, order([[itemB, 1]], { visit_id: va.id }))).doc;
  assert.equal(y.visit_id, null);
  const z = (await placed(b, order([[itemB, 1]], { visit_id: randomUUID() }))).doc;
  assert.equal(z.visit_id, null);
  // B's lists and reports hold none of A's rows.
  assert.deepEqual((await listOrders(b, adminB)).map((o) => o.id).sort(), [y.id, z.id].sort());
  const rowsB = (await (await api(b, `/v1/analytics/visits?${range()}`, { auth: adminB })).json()).rows;
  assert.ok(!rowsB.some((r) => r.utm_source === 'a-only'), JSON.stringify(rowsB));
  // A's order is untouched and still attributed on A.
  const still = await (await api(a, `/v1/orders/${x.id}`, { auth: adminA })).json();
  assert.equal(still.version, 1);
  assert.equal(still.status, 'pending');
});

test('donations: enabled tenants take them within bounds and campaigns; disabled ones refuse', async () => {
  const t = await createTenant({ settings: { donations: { enabled: true, minimum: '5', maximum: '500', campaigns: ['spring', 'relief'] } } });
  const admin = await bearer(t, 'admin');
  const give = (donation, over = {}) => checkout(t, { donation, customer, ...over });
  const { res, doc } = await placed(t, { donation: { amount: '25.5', campaign: 'spring' }, customer });
  assert.equal(res.headers.get('location'), `/v1/storefront/orders/${doc.id}`);
  assertOrder(doc, {
    kind: 'donation',
    total: '25.500',
    lines: [{ line: 1, kind: 'donation', item_id: null, sku: null, name: 'Donation: spring', unit_price: '25.500', quantity: 1, line_total: '25.500', campaign: 'spring' }],
  });
  assert.equal(doc.shipping_address, null);
  // Bounds are inclusive.
  assert.equal((await placed(t, { donation: { amount: '5', campaign: 'relief' }, customer })).doc.total, '5.000');
  assert.equal((await placed(t, { donation: { amount: '500', campaign: 'relief' }, customer })).doc.total, '500.000');

  for (const amount of ['4.99', '500.001', '0', '-5']) {
    const p = await assertProblem(await give({ amount, campaign: 'spring' }), 400, 'validation_failed');
    assert.ok(fieldsOf(p).includes('donation.amount'), `${amount}: ${JSON.stringify(p)}`);
  }
  const camp = await assertProblem(await give({ amount: '10', campaign: 'winter' }), 400, 'validation_failed');
  assert.ok(fieldsOf(camp).includes('donation.campaign'), JSON.stringify(camp));
  const item = await newItem(t, admin, { inventory: 5 });
  const both = await assertProblem(await give({ amount: '10', campaign: 'spring' }, { items: [{ item_id: item.id, quantity: 1 }] }), 400, 'validation_failed');
  assert.ok(both.errors.length >= 1);
  await assertProblem(await checkout(t, { customer }), 400, 'validation_failed');
  assert.equal(await inventory(t, admin, item.id), 5);
  assert.equal((await listOrders(t, admin)).length, 3, 'refusals write nothing');

  // Defaults: minimum 1, the donations currency, no campaign → "Donation".
  const usd = await createTenant({ settings: { donations: { enabled: true, currency: 'USD' } } });
  const plain = (await placed(usd, { donation: { amount: '1' }, customer })).doc;
  assert.equal(plain.currency, 'USD');
  assert.equal(plain.kind, 'donation');
  assert.deepEqual(plain.lines, [{ line: 1, kind: 'donation', item_id: null, sku: null, name: 'Donation', unit_price: '1.000', quantity: 1, line_total: '1.000', campaign: null }]);
  const low = await assertProblem(await checkout(usd, { donation: { amount: '0.5' }, customer }), 400, 'validation_failed');
  assert.ok(fieldsOf(low).includes('donation.amount'));

  // Not enabled (absent, or enabled: false): 422, nothing written.
  for (const settings of [{}, { donations: { enabled: false, minimum: '1' } }]) {
    const off = await createTenant({ settings });
    await assertProblem(await checkout(off, { donation: { amount: '10' }, customer }), 422, 'donations_disabled');
    assert.deepEqual(await listOrders(off, await bearer(off, 'admin')), []);
  }
});

test('attribution and summary: visits by source and campaign with their orders and revenue; donations apart', async () => {
  const t = await createTenant({ settings: { donations: { enabled: true } } });
  const admin = await bearer(t, 'admin');
  const member = await bearer(t, 'member');
  const item = await newItem(t, admin, { price: '20', inventory: 10 });
  const news1 = await visit(t, { path: '/', utm_source: 'newsletter', utm_campaign: 'spring', utm_medium: 'email' });
  await visit(t, { path: '/mugs', utm_source: 'newsletter', utm_campaign: 'spring' }, news1.cookie);
  const ads = await visit(t, { path: '/', utm_source: 'ads', utm_campaign: 'brand' });
  await visit(t, { path: '/about' });

  const sold = (await placed(t, order([[item, 2]], { visit_id: news1.id }), { cookie: news1.cookie })).doc;
  assert.equal(sold.total, '40.000');
  // A donation and a cancelled order referencing the ads visit count for nothing there.
  const gift = (await placed(t, { donation: { amount: '7.5' }, customer, visit_id: ads.id }, { cookie: ads.cookie })).doc;
  assert.equal(gift.visit_id, ads.id);
  const gone = (await placed(t, order([[item, 1]], { visit_id: ads.id }), { cookie: ads.cookie })).doc;
  const cancel = await patch(t, gone.id, admin, { status: 'cancelled' });
  assert.equal(cancel.status, 200);

  const att = await api(t, `/v1/analytics/visits?${range()}`, { auth: member });
  const a = await att.json();
  assert.equal(att.status, 200, JSON.stringify(a));
  assert.ok(a.from && a.to, 'the range is echoed');
  assert.equal(a.rows.length, 3, JSON.stringify(a.rows));
  // (contract silent) money is numeric(12,3) text everywhere, zero included: "0.000".
  assert.deepEqual(a.rows[0], { utm_source: 'newsletter', utm_campaign: 'spring', visits: 2, orders: 1, revenue: '40.000' });
  const row = (s, c) => a.rows.find((r) => r.utm_source === s && r.utm_campaign === c);
  assert.deepEqual(row('ads', 'brand'), { utm_source: 'ads', utm_campaign: 'brand', visits: 1, orders: 0, revenue: '0.000' });
  assert.deepEqual(row(null, null), { utm_source: null, utm_campaign: null, visits: 1, orders: 0, revenue: '0.000' });
  for (let i = 1; i < a.rows.length; i++) assert.ok(a.rows[i - 1].visits >= a.rows[i].visits, 'sorted by visits desc');

  const sum = await api(t, `/v1/orders/summary?${range()}`, { auth: member });
  const s = await sum.json();
  assert.equal(sum.status, 200, JSON.stringify(s));
  assert.ok(s.from && s.to);
  assert.deepEqual(s.orders.by_status.pending, { count: 1, revenue: '40.000' });
  // (contract silent) cancelled orders are counted under cancelled; their revenue is not asserted.
  assert.equal(s.orders.by_status.cancelled.count, 1);
  assert.equal((s.orders.by_status.confirmed?.count ?? 0), 0);
  assert.deepEqual(s.donations, { count: 1, amount: '7.500' });
  const today = s.orders.by_day.find((d) => d.day === sold.created_at.slice(0, 10));
  assert.ok(today, JSON.stringify(s.orders.by_day));
  assert.equal(today.revenue, '40.000', 'revenue excludes cancelled orders and donations');
  // The default range (last 30 days) includes today.
  const dflt = await (await api(t, '/v1/orders/summary', { auth: member })).json();
  assert.deepEqual(dflt.orders.by_status.pending, { count: 1, revenue: '40.000' });
  // A range in the past holds nothing.
  const past = `from=2001-01-01T00:00:00Z&to=2001-01-02T00:00:00Z`;
  const old = await (await api(t, `/v1/orders/summary?${past}`, { auth: member })).json();
  assert.equal(old.orders.by_status.pending?.count ?? 0, 0);
  assert.deepEqual(old.donations.count, 0);
  assert.deepEqual((await (await api(t, `/v1/analytics/visits?${past}`, { auth: member })).json()).rows, []);
  // (contract silent) unreadable bounds are a 400 naming them; reports need a token.
  const badFrom = await assertProblem(await api(t, '/v1/analytics/visits?from=yesterday', { auth: member }), 400, 'validation_failed');
  assert.ok(fieldsOf(badFrom).includes('from'));
  await assertProblem(await api(t, '/v1/orders/summary'), 401, 'missing_token');
  await assertProblem(await api(t, '/v1/analytics/visits'), 401, 'missing_token');
});

test('outbox: exactly one row per event, written with it; refusals write none', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  const item = await newItem(t, admin, { inventory: 3 });
  const key = randomUUID();
  const a = (await placed(t, order([[item, 1]]), { key })).doc;
  let rows = await outbox(t);
  assert.deepEqual(rows.map((r) => [r.event, r.order_id]), [['order.created', a.id]]);
  assert.equal(rows[0].payload.id, a.id);
  assert.equal(rows[0].payload.status, 'pending');
  assert.equal(rows[0].delivered_at, null);
  // Replays, conflicts, refused transitions and stock refusals write nothing.
  assert.equal((await checkout(t, order([[item, 1]]), { key })).status, 201);
  assert.equal((await checkout(t, order([[item, 2]]), { key })).status, 409);
  assert.equal((await checkout(t, order([[item, 50]]))).status, 409);
  assert.equal((await patch(t, a.id, admin, { status: 'delivered' })).status, 409);
  assert.equal((await patch(t, a.id, admin, { status: 'confirmed' }, '"v9"')).status, 412);
  assert.equal((await outbox(t)).length, 1);

  await transitioned(t, a.id, admin, 'confirmed');
  await transitioned(t, a.id, admin, 'shipped');
  const b = (await placed(t, order([[item, 1]]))).doc;
  await transitioned(t, b.id, admin, 'cancelled');
  assert.equal((await patch(t, b.id, admin, { status: 'cancelled' })).status, 409);
  rows = await outbox(t);
  const events = rows.map((r) => `${r.event} ${r.order_id}`).sort();
  assert.deepEqual(events, [
    `order.cancelled ${b.id}`,
    `order.created ${a.id}`,
    `order.created ${b.id}`,
    `order.status_changed ${a.id}`,
    `order.status_changed ${a.id}`,
  ].sort());
  const changes = rows.filter((r) => r.event === 'order.status_changed').map((r) => [r.payload.from, r.payload.to, r.payload.order.status]);
  assert.deepEqual(changes.sort(), [['confirmed', 'shipped', 'shipped'], ['pending', 'confirmed', 'confirmed']]);
  for (const r of rows) assert.equal(r.delivered_at, null);
});

test('one SQL batch per commerce request', async () => {
  const t = await createTenant({ settings: { donations: { enabled: true } } });
  const admin = await bearer(t, 'admin');
  const item = await newItem(t, admin, { inventory: 5 });
  // Each request's statements travel as one batch. The only other round trips a request may
  // make are single queries: the tenant lookup and, for a signed-in caller, the identity
  // lookup, when not cached (always on Spin under wasmtime serve: a fresh instance per
  // request, no key-value store).
  const maxLookups = runtime === 'workers' ? 1 : 2;
  const cost = async (fn, status) => {
    const before = await sqlStats();
    const res = await fn();
    const text = await res.text();
    if (status) assert.equal(res.status, status, text);
    else assert.ok(res.status < 400, `status ${res.status}: ${text}`);
    const after = await sqlStats();
    const batches = after.sql_batches - before.sql_batches;
    const lookups = after.sql_requests - before.sql_requests - batches;
    assert.ok(lookups <= maxLookups, `${lookups} tenant/identity lookups`);
    return { batches, res, text };
  };
  const v = await cost(() => postVisit(t, { path: '/', utm_source: 'x' }));
  const cookie = cookieOf(v.res);
  const visitId = JSON.parse(v.text).id;
  const key = randomUUID();
  const body = order([[item, 1]], { visit_id: visitId });
  const c = await cost(() => checkout(t, body, { key, cookie }));
  const id = JSON.parse(c.text).id;
  const costs = {
    visit: v.batches,
    visit_again: (await cost(() => postVisit(t, { path: '/b' }, cookie))).batches,
    checkout: c.batches,
    replay: (await cost(() => checkout(t, body, { key, cookie }))).batches,
    donation: (await cost(() => checkout(t, { donation: { amount: '3' }, customer }, { cookie }))).batches,
    out_of_stock: (await cost(() => checkout(t, order([[item, 99]]), { cookie }), 409)).batches,
    unavailable: (await cost(() => checkout(t, order([[{ id: randomUUID() }, 1]]), { cookie }), 422)).batches,
    storefront_order: (await cost(() => api(t, `/v1/storefront/orders/${id}`, { headers: { cookie } }))).batches,
    list: (await cost(() => api(t, '/v1/orders?status=pending&limit=5', { auth: admin }))).batches,
    get: (await cost(() => api(t, `/v1/orders/${id}`, { auth: admin }))).batches,
    patch: (await cost(() => patch(t, id, admin, { status: 'confirmed' }, '"v1"'))).batches,
    invalid_transition: (await cost(() => patch(t, id, admin, { status: 'pending' }), 409)).batches,
    summary: (await cost(() => api(t, `/v1/orders/summary?${range()}`, { auth: admin }))).batches,
    analytics: (await cost(() => api(t, `/v1/analytics/visits?${range()}`, { auth: admin }))).batches,
    // Refusals decided at the edge cost nothing.
    no_key: (await cost(() => checkout(t, body, { key: null, cookie }), 400)).batches,
    bad_body: (await cost(() => checkout(t, { items: [], customer }, { cookie }), 400)).batches,
  };
  assert.deepEqual(costs, {
    visit: 1, visit_again: 1, checkout: 1, replay: 1, donation: 1, out_of_stock: 1, unavailable: 1,
    storefront_order: 1, list: 1, get: 1, patch: 1, invalid_transition: 1, summary: 1, analytics: 1,
    no_key: 0, bad_body: 0,
  });
});

test('bad input is refused and changes nothing', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  const item = await newItem(t, admin, { inventory: 5 });
  const draft = await newItem(t, admin, { inventory: 5, status: 'draft' });
  const archived = await newItem(t, admin, { inventory: 5 });
  assert.equal((await api(t, `/v1/catalog/${archived.id}`, { method: 'DELETE', auth: admin })).status, 200);
  // One key for every refused request: none of them may consume it.
  const key = randomUUID();
  const line = (over = {}) => ({ item_id: item.id, quantity: 1, ...over });
  const invalid = [
    [{ items: [], customer }, 'items'],
    [{ items: [line({ quantity: 0 })], customer }, 'items[0].quantity'],
    [{ items: [line({ quantity: 1001 })], customer }, 'items[0].quantity'],
    [{ items: [line({ quantity: 1.5 })], customer }, 'items[0].quantity'],
    [{ items: [line({ quantity: '1' })], customer }, 'items[0].quantity'],
    [{ items: [line({ item_id: 'nope' })], customer }, 'items[0].item_id'],
    [{ items: Array.from({ length: 51 }, () => line({ item_id: randomUUID() })), customer }, 'items'],
    [{ items: [line()], customer: { ...customer, email: 'not-an-email' } }, 'customer.email'],
    [{ items: [line()] }, 'customer'],
    [{ items: [line()], customer, shipping_address: { line1: 'x', postal_code: '1', country: 'DE' } }, 'shipping_address.city'],
    // (contract silent) a visit_id that is not a UUID is a shape error; an unknown one is dropped.
    [{ items: [line()], customer, visit_id: 'nope' }, 'visit_id'],
  ];
  for (const [body, field] of invalid) {
    const p = await assertProblem(await checkout(t, body, { key }), 400, 'validation_failed');
    assert.ok(fieldsOf(p).includes(field), `${field} not named: ${JSON.stringify(p.errors)}`);
  }
  // (contract silent) the same item twice is a 400, not two lines.
  await assertProblem(await checkout(t, { items: [line(), line()], customer }, { key }), 400, 'validation_failed');
  await assertProblem(await checkout(t, '{"items":', { key }), 400, 'validation_failed');
  await assertProblem(await checkout(t, 'items=1', { key, headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415, 'unsupported_media_type');

  const ghost = randomUUID();
  const unknown = await assertProblem(await checkout(t, { items: [line(), line({ item_id: ghost })], customer }, { key }), 422, 'item_unavailable');
  assert.deepEqual(unknown.items, [ghost]);
  const hidden = await assertProblem(await checkout(t, { items: [line({ item_id: draft.id }), line({ item_id: archived.id }), line()], customer }, { key }), 422, 'item_unavailable');
  assert.deepEqual([...hidden.items].sort(), [draft.id, archived.id].sort());

  assert.equal(await inventory(t, admin, item.id), 5);
  assert.equal(await inventory(t, admin, draft.id), 5);
  assert.deepEqual(await listOrders(t, admin), []);
  assert.deepEqual(await outbox(t), []);
  // The key was never consumed: it now creates.
  const { res } = await placed(t, { items: [line()], customer }, { key });
  assert.equal(res.headers.get('idempotent-replayed'), null);
  assert.equal(await inventory(t, admin, item.id), 4);

  // Visits: over-long or missing members are 400s naming them, and nothing is recorded.
  const badVisits = [
    [{ path: `/${'a'.repeat(2048)}` }, 'path'],
    [{ path: '' }, 'path'],
    [{}, 'path'],
    [{ path: '/', referrer: `https://x.example/${'r'.repeat(2048)}` }, 'referrer'],
    [{ path: '/', utm_source: 's'.repeat(201) }, 'utm_source'],
    [{ path: '/', utm_campaign: 'c'.repeat(201) }, 'utm_campaign'],
    [{ path: '/', colour: 'red' }, 'colour'],
  ];
  for (const [body, field] of badVisits) {
    const p = await assertProblem(await postVisit(t, body), 400, 'validation_failed');
    assert.ok(fieldsOf(p).includes(field), `${field} not named: ${JSON.stringify(p.errors)}`);
  }
  // The longest allowed path is fine.
  await visit(t, { path: `/${'a'.repeat(2047)}` });
  const [n] = await db.query('SELECT count(*)::int AS n FROM visits WHERE tenant_id = $1', [t.id]);
  assert.equal(n.n, 1);
});

test('visits are rate limited per visitor: the 61st within the hour is 429 with Retry-After', async () => {
  // The default, 60 an hour.
  const t = await createTenant();
  const cookie = await newVisitor(t);
  for (const n of [30, 29]) {
    const results = await Promise.all(Array.from({ length: n }, (_, i) => postVisit(t, { path: `/p/${i}` }, cookie)));
    assert.deepEqual(results.map((r) => r.status), Array(n).fill(201));
  }
  const over = await postVisit(t, { path: '/one-more' }, cookie);
  const p = await assertProblem(over, 429, 'rate_limited');
  const retry = Number(over.headers.get('retry-after'));
  // Until the first of them is an hour old.
  assert.ok(Number.isInteger(retry) && retry >= 3000 && retry <= 3600, `Retry-After: ${over.headers.get('retry-after')}`);
  if ('retry_after' in p) assert.equal(p.retry_after, retry);
  // Other visitors are not limited by this one.
  await visit(t, { path: '/' });

  // A tenant's own limit; parallel requests cannot overshoot it.
  const u = await createTenant({ settings: { limits: { visits_per_visitor_per_hour: 3 } } });
  const c = await newVisitor(u);
  const burst = await Promise.all(Array.from({ length: 10 }, () => postVisit(u, { path: '/' }, c)));
  assert.deepEqual(burst.map((r) => r.status).sort(), [201, 201, 429, 429, 429, 429, 429, 429, 429, 429]);
  const [n] = await db.query('SELECT count(*)::int AS n FROM visits WHERE tenant_id = $1', [u.id]);
  assert.equal(n.n, 3);
  await visit(u, { path: '/' }); // another visitor
});

test('orders list: newest first, filters by status, email and range, cursor pages', async () => {
  const t = await createTenant({ tier: 'premium' });
  const admin = await bearer(t, 'admin');
  const member = await bearer(t, 'member');
  const item = await newItem(t, admin, { inventory: 50 });
  const bob = { email: 'bob@example.com', name: 'Bob' };
  const made = [];
  for (let i = 0; i < 7; i++) made.push((await placed(t, order([[item, 1]], { customer: i % 2 ? bob : customer }))).doc);
  await transitioned(t, made[2].id, admin, 'confirmed');
  const all = await listOrders(t, member);
  assert.deepEqual(all.map((o) => o.number), [1007, 1006, 1005, 1004, 1003, 1002, 1001]);
  assert.deepEqual((await listOrders(t, member, 'status=confirmed')).map((o) => o.id), [made[2].id]);
  assert.equal((await listOrders(t, member, 'status=pending')).length, 6);
  assert.deepEqual((await listOrders(t, member, `email=${encodeURIComponent(bob.email)}`)).map((o) => o.number), [1006, 1004, 1002]);
  assert.equal((await listOrders(t, member, range())).length, 7);
  assert.equal((await listOrders(t, member, 'from=2001-01-01T00:00:00Z&to=2001-01-02T00:00:00Z')).length, 0);
  const seen = [];
  let cursor = null;
  let pages = 0;
  do {
    const res = await api(t, `/v1/orders?limit=3${cursor ? `&cursor=${cursor}` : ''}`, { auth: member });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.ok(body.items.length <= 3);
    seen.push(...body.items.map((o) => o.number));
    cursor = body.next_cursor;
    pages++;
  } while (cursor && pages < 10);
  assert.equal(pages, 3);
  assert.deepEqual(seen, [1007, 1006, 1005, 1004, 1003, 1002, 1001]);
  await assertProblem(await api(t, '/v1/orders?status=lost', { auth: member }), 400, 'validation_failed');
  await assertProblem(await api(t, '/v1/orders?limit=500', { auth: member }), 400, 'validation_failed');
});

test('the monthly order limit: settings.limits.max_orders_per_month overrides the tier', async () => {
  const t = await createTenant({ settings: { limits: { max_orders_per_month: 2 } } });
  const admin = await bearer(t, 'admin');
  const item = await newItem(t, admin, { inventory: 10 });
  await placed(t, order([[item, 1]]));
  await placed(t, order([[item, 1]]));
  const p = await assertProblem(await checkout(t, order([[item, 1]])), 403, 'tier_limit_reached');
  assert.equal(p.limit, 2);
  assert.equal(p.count, 2);
  assert.equal(await inventory(t, admin, item.id), 8);
  assert.equal((await listOrders(t, admin)).length, 2);
});
