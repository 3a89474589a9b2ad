// Catalog: tenant admin CRUD and the public storefront, black-box against one runtime. Each
// test makes its own tenant (through the SQL proxy with the Neon driver), so runtimes and
// reruns never share rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { api, assertProblem, bearer, createTenant, runtime, sqlStats, stack } from './stack.mjs';

const port = new URL(process.env.EDGEFRONT_BASE_URL).port;
const item = (over = {}) => ({ sku: `SKU-${randomUUID().slice(0, 8)}`, name: 'Blue mug', price: '12.5', ...over });

async function created(t, auth, body, headers) {
  const res = await api(t, '/v1/catalog', { method: 'POST', auth, body, headers });
  const doc = await res.json();
  assert.equal(res.status, 201, JSON.stringify(doc));
  return { res, doc };
}

async function listAll(t, auth, query = '') {
  const ids = [];
  let cursor = null;
  for (let pages = 0; pages < 100; pages++) {
    const sep = query ? '&' : '';
    const res = await api(t, `/v1/catalog?limit=100${sep}${query}${cursor ? `&cursor=${cursor}` : ''}`, { auth });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    ids.push(...body.items.map((i) => i.id));
    cursor = body.next_cursor;
    if (!cursor) return ids;
  }
  throw new Error('pagination did not end');
}

test('create, read, update with If-Match, archive', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  const { res, doc } = await created(t, admin, item({ description: 'Stoneware', inventory: 3, category: 'kitchen' }));
  assert.equal(res.headers.get('location'), `/v1/catalog/${doc.id}`);
  assert.equal(res.headers.get('etag'), '"v1"');
  assert.equal(doc.price, '12.500');
  assert.equal(doc.currency, 'EUR', 'defaults to the tenant currency');
  assert.equal(doc.status, 'draft');
  assert.equal(doc.version, 1);

  const got = await api(t, `/v1/catalog/${doc.id}`, { auth: await bearer(t, 'member') });
  assert.equal(got.status, 200);
  assert.deepEqual(await got.json(), doc);

  const patched = await api(t, `/v1/catalog/${doc.id}`, {
    method: 'PATCH', auth: admin, headers: { 'if-match': '"v1"' }, body: { price: 9.99, category: null, status: 'active' },
  });
  const p = await patched.json();
  assert.equal(patched.status, 200, JSON.stringify(p));
  assert.equal(p.price, '9.990');
  assert.equal(p.category, null);
  assert.equal(p.version, 2);
  assert.equal(p.name, 'Blue mug', 'untouched fields stay');
  assert.equal(patched.headers.get('etag'), '"v2"');

  // A writer holding the old version loses.
  const stale = await api(t, `/v1/catalog/${doc.id}`, { method: 'PATCH', auth: admin, headers: { 'if-match': '"v1"' }, body: { name: 'Lost update' } });
  const problem = await assertProblem(stale, 412, 'precondition_failed');
  assert.equal(problem.current_etag, '"v2"');
  assert.equal((await (await api(t, `/v1/catalog/${doc.id}`, { auth: admin })).json()).name, 'Blue mug');

  const del = await api(t, `/v1/catalog/${doc.id}`, { method: 'DELETE', auth: admin });
  assert.equal(del.status, 200);
  assert.equal((await del.json()).status, 'archived');
  assert.deepEqual(await listAll(t, admin), [], 'archived items leave the default listing');
  assert.deepEqual(await listAll(t, admin, 'status=archived'), [doc.id]);
});

test('members read, only admins and owners write', async () => {
  const t = await createTenant();
  const member = await bearer(t, 'member');
  await assertProblem(await api(t, '/v1/catalog', { method: 'POST', auth: member, body: item() }), 403, 'insufficient_role');
  await assertProblem(await api(t, '/v1/catalog', {}), 401, 'missing_token');
  const owner = await bearer(t, 'owner');
  await created(t, owner, item());
  assert.equal((await listAll(t, member)).length, 1);
});

test('invalid input: every field named, 413, 415, and nothing written', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  const before = (await sqlStats()).sql_batches;
  const bad = await api(t, '/v1/catalog', {
    method: 'POST', auth: admin,
    body: { sku: 'has space', name: '  ', price: -1, inventory: 1.5, status: 'sold', currency: 'euro', image_file_ids: ['nope'], colour: 'red' },
  });
  const p = await assertProblem(bad, 400, 'validation_failed');
  const fields = p.errors.map((e) => e.field).sort();
  assert.deepEqual(fields, ['colour', 'currency', 'image_file_ids', 'inventory', 'name', 'price', 'sku', 'status']);
  for (const e of p.errors) assert.ok(e.code && e.message, JSON.stringify(e));
  const decimals = await assertProblem(await api(t, '/v1/catalog', { method: 'POST', auth: admin, body: item({ price: '1.2345' }) }), 400, 'validation_failed');
  assert.equal(decimals.errors[0].code, 'too_many_decimals');
  await assertProblem(await api(t, '/v1/catalog', { method: 'POST', auth: admin, body: item({ name: 'x'.repeat(20_000) }) }), 413, 'payload_too_large');
  await assertProblem(await api(t, '/v1/catalog', { method: 'POST', auth: admin, body: 'sku=a', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415, 'unsupported_media_type');
  await assertProblem(await api(t, '/v1/catalog', { method: 'POST', auth: admin, body: '{"sku":' }), 400, 'validation_failed');
  await assertProblem(await api(t, '/v1/catalog?limit=500', { auth: admin }), 400, 'validation_failed');
  await assertProblem(await api(t, '/v1/catalog?cursor=forged', { auth: admin }), 400, 'validation_failed');
  await assertProblem(await api(t, `/v1/catalog/${randomUUID()}`, { method: 'PATCH', auth: admin, body: {} }), 400, 'validation_failed');
  // Rejections are decided at the edge: no statement reached the database.
  assert.equal((await sqlStats()).sql_batches, before);
  assert.deepEqual(await listAll(t, admin), []);
});

test('Idempotency-Key: same body replays, different body conflicts, concurrent retries create once', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  const key = randomUUID();
  const body = item();
  const first = await created(t, admin, body, { 'idempotency-key': key });
  // Same meaning, different bytes (member order): still the same request.
  const reordered = Object.fromEntries(Object.entries(body).reverse());
  const again = await created(t, admin, reordered, { 'idempotency-key': key });
  assert.deepEqual(again.doc, first.doc);
  assert.equal(again.res.headers.get('idempotent-replayed'), 'true');
  await assertProblem(await api(t, '/v1/catalog', { method: 'POST', auth: admin, body: { ...body, name: 'Other' }, headers: { 'idempotency-key': key } }), 409, 'idempotency_key_reused');

  const key2 = randomUUID();
  const body2 = item();
  const results = await Promise.all(Array.from({ length: 6 }, () => api(t, '/v1/catalog', { method: 'POST', auth: admin, body: body2, headers: { 'idempotency-key': key2 } })));
  const docs = await Promise.all(results.map((r) => r.json()));
  assert.deepEqual(results.map((r) => r.status), Array(6).fill(201));
  assert.equal(new Set(docs.map((d) => d.id)).size, 1);
  assert.equal((await listAll(t, admin)).length, 2);
  // Without a key, a duplicate SKU is a conflict, not a second item.
  await assertProblem(await api(t, '/v1/catalog', { method: 'POST', auth: admin, body: body2 }), 409, 'sku_taken');
});

test('the tier limit holds under concurrent creates and counts live items only', async () => {
  const t = await createTenant({ settings: { limits: { max_catalog_items: 5 } } });
  const admin = await bearer(t, 'admin');
  await api(t, '/v1/catalog', { auth: admin }); // warm the tenant and key caches
  const results = await Promise.all(Array.from({ length: 12 }, () => api(t, '/v1/catalog', { method: 'POST', auth: admin, body: item({ status: 'active' }) })));
  const statuses = results.map((r) => r.status).sort();
  assert.deepEqual(statuses, [...Array(5).fill(201), ...Array(7).fill(403)]);
  const refused = results.find((r) => r.status === 403);
  const p = await assertProblem(refused, 403, 'tier_limit_reached');
  assert.equal(p.limit, 5);
  assert.equal(p.count, 5);
  const ids = await listAll(t, admin);
  assert.equal(ids.length, 5);
  // Archiving frees room; bringing an archived item back needs room again.
  assert.equal((await api(t, `/v1/catalog/${ids[0]}`, { method: 'DELETE', auth: admin })).status, 200);
  await created(t, admin, item());
  await assertProblem(await api(t, `/v1/catalog/${ids[0]}`, { method: 'PATCH', auth: admin, body: { status: 'draft' } }), 403, 'tier_limit_reached');
});

test('cursor pagination: every item exactly once while others are being inserted', async () => {
  const t = await createTenant({ tier: 'premium' });
  const admin = await bearer(t, 'admin');
  const original = [];
  for (let i = 0; i < 23; i++) original.push((await created(t, admin, item({ name: `Item ${i}`, price: String(i) }))).doc.id);
  for (const sort of ['-created_at', 'created_at', 'name', 'price', '-price']) {
    const seen = [];
    let cursor = null;
    let page = 0;
    do {
      const res = await api(t, `/v1/catalog?limit=7&sort=${sort}${cursor ? `&cursor=${cursor}` : ''}`, { auth: admin });
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      seen.push(...body.items.map((x) => x.id));
      cursor = body.next_cursor;
      // Concurrent writers add items between pages.
      await Promise.all([0, 1].map((j) => created(t, admin, item({ name: `Late ${sort} ${page} ${j}`, price: '5' }))));
      page++;
    } while (cursor && page < 50);
    assert.equal(new Set(seen).size, seen.length, `${sort}: duplicates across pages`);
    for (const id of original) assert.ok(seen.includes(id), `${sort}: item ${id} was skipped`);
  }
});

test('filters: status, category and text search', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  const a = (await created(t, admin, item({ name: 'Red running shoe', category: 'shoes', status: 'active' }))).doc;
  const b = (await created(t, admin, item({ name: 'Blue walking shoe', category: 'shoes' }))).doc;
  const c = (await created(t, admin, item({ name: 'Red wool hat', category: 'hats', description: '100% merino' }))).doc;
  const ids = async (q) => (await listAll(t, admin, q)).sort();
  assert.deepEqual(await ids('q=red'), [a.id, c.id].sort());
  assert.deepEqual(await ids('q=RED%20shoe'), [a.id]);
  assert.deepEqual(await ids('q=runn'), [a.id], 'substrings match');
  assert.deepEqual(await ids('q=100%25'), [c.id], 'LIKE wildcards are literal');
  assert.deepEqual(await ids('category=shoes'), [a.id, b.id].sort());
  assert.deepEqual(await ids('status=active'), [a.id]);
  assert.deepEqual(await ids('q=nothing-like-this'), []);
});

test("another tenant's ids, host or token get 404/403 and none of its data", async () => {
  const a = await createTenant();
  const b = await createTenant();
  const adminA = await bearer(a, 'admin');
  const adminB = await bearer(b, 'admin');
  const x = (await created(a, adminA, item({ status: 'active' }))).doc;
  for (const [method, body] of [['GET'], ['PATCH', { name: 'hijack' }], ['DELETE']]) {
    const res = await api(b, `/v1/catalog/${x.id}`, { method, auth: adminB, body });
    const p = await assertProblem(res, 404, 'not_found');
    assert.ok(!JSON.stringify(p).includes(x.sku));
  }
  await assertProblem(await api(b, `/v1/catalog/${x.id}`, { auth: adminA }), 403, 'not_a_member');
  await assertProblem(await api(b, '/v1/catalog', { method: 'POST', auth: adminA, body: item() }), 403, 'not_a_member');
  await assertProblem(await api(b, `/v1/storefront/catalog/${x.id}`), 404, 'not_found');
  const listB = await (await api(b, '/v1/storefront/catalog')).json();
  assert.deepEqual(listB.items, []);
  assert.deepEqual(await listAll(b, adminB), []);
  // A's item is untouched.
  const still = await (await api(a, `/v1/catalog/${x.id}`, { auth: adminA })).json();
  assert.equal(still.version, 1);
});

test('storefront: active items only, public fields, cacheable with ETag and 304', async () => {
  const t = await createTenant({ settings: { branding: { primary_color: '#123456' } } });
  const admin = await bearer(t, 'admin');
  const live = (await created(t, admin, item({ name: 'Live', status: 'active', inventory: 2, category: 'c1' }))).doc;
  const draft = (await created(t, admin, item({ name: 'Draft' }))).doc;

  const profile = await api(t, '/v1/storefront');
  const prof = await profile.json();
  assert.equal(profile.status, 200);
  assert.equal(prof.slug, t.slug);
  assert.equal(prof.currency, 'EUR');
  assert.equal(prof.branding.primary_color, '#123456');

  const list = await api(t, '/v1/storefront/catalog');
  const body = await list.json();
  assert.equal(list.status, 200);
  assert.deepEqual(body.items.map((i) => i.id), [live.id]);
  const shown = body.items[0];
  assert.equal(shown.in_stock, true);
  for (const hidden of ['inventory', 'status', 'version']) assert.ok(!(hidden in shown), `storefront shows ${hidden}`);
  assert.match(list.headers.get('cache-control'), /^public, max-age=\d+/);
  const etag = list.headers.get('etag');
  assert.ok(etag);
  const again = await api(t, '/v1/storefront/catalog', { headers: { 'if-none-match': etag } });
  assert.equal(again.status, 304);
  assert.equal(await again.text(), '');
  assert.equal(again.headers.get('etag'), etag);

  await assertProblem(await api(t, `/v1/storefront/catalog/${draft.id}`), 404, 'not_found');
  const one = await api(t, `/v1/storefront/catalog/${live.id}`);
  assert.equal(one.status, 200);
  const tag = one.headers.get('etag');
  assert.equal((await api(t, `/v1/storefront/catalog/${live.id}`, { headers: { 'if-none-match': tag } })).status, 304);
  // A change makes a new tag.
  await api(t, `/v1/catalog/${live.id}`, { method: 'PATCH', auth: admin, body: { price: '1' } });
  const changed = await api(t, `/v1/storefront/catalog/${live.id}`, { headers: { 'if-none-match': tag } });
  assert.equal(changed.status, 200);
  assert.equal((await changed.json()).price, '1.000');
  // Drafts cannot be reached by filter tricks either.
  assert.deepEqual((await (await api(t, '/v1/storefront/catalog?status=draft')).json()).items.map((i) => i.id), [live.id]);
  assert.deepEqual((await (await api(t, '/v1/storefront/catalog?category=c1&q=live')).json()).items.map((i) => i.id), [live.id]);
});

test("CORS: the tenant's own origins and configured ones, preflight at the edge", async () => {
  const own = `http://acme.${stack.base_domain}:${port}`;
  const custom = `https://${Object.keys(stack.custom_domains)[0]}`;
  for (const origin of [own, custom]) {
    const pre = await api('acme', '/v1/catalog', {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    assert.equal(pre.status, 204, origin);
    assert.equal(pre.headers.get('access-control-allow-origin'), origin);
    assert.match(pre.headers.get('access-control-allow-methods'), /POST/);
    assert.match(pre.headers.get('access-control-allow-headers'), /authorization/);
    const get = await api('acme', '/v1/storefront/catalog', { headers: { origin } });
    assert.equal(get.status, 200);
    assert.equal(get.headers.get('access-control-allow-origin'), origin);
    assert.match(get.headers.get('vary'), /Origin/);
  }
  // Another tenant's origin, or a stranger's, is refused.
  for (const origin of [`http://demo.${stack.base_domain}:${port}`, 'https://evil.example', 'http://shop.acme.test']) {
    const pre = await api('acme', '/v1/storefront/catalog', { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'GET' } });
    await assertProblem(pre, 403, 'origin_not_allowed');
    const get = await api('acme', '/v1/storefront/catalog', { headers: { origin } });
    assert.equal(get.headers.get('access-control-allow-origin'), null);
  }
  // Origins a tenant lists in its settings.
  const t = await createTenant({ settings: { cors_origins: ['https://brand.example'] } });
  const pre = await api(t, '/v1/storefront', { method: 'OPTIONS', headers: { origin: 'https://brand.example', 'access-control-request-method': 'GET' } });
  assert.equal(pre.status, 204);
  // Problem documents carry CORS headers too, so browser code can read them.
  const denied = await api('acme', '/v1/catalog', { headers: { origin: own } });
  assert.equal(denied.status, 401);
  assert.equal(denied.headers.get('access-control-allow-origin'), own);
});

test('one SQL round trip per catalog request, none for the storefront profile', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  const x = (await created(t, admin, item({ status: 'active' }))).doc;
  // Each request's statements travel as one batch (one HTTP round trip). The only other
  // round trips a request may make are single queries: the tenant lookup and, for a signed-in
  // caller, the identity lookup, when not cached. The Workers isolate has both cached by now;
  // Spin under wasmtime serve runs each request in a fresh instance without a key-value store.
  const maxLookups = runtime === 'workers' ? 1 : 2;
  const cost = async (fn) => {
    const before = await sqlStats();
    const res = await fn();
    assert.ok(res.status < 400, `status ${res.status}: ${await res.text()}`);
    const after = await sqlStats();
    const batches = after.sql_batches - before.sql_batches;
    const lookups = after.sql_requests - before.sql_requests - batches;
    assert.ok(lookups <= maxLookups, `${lookups} tenant/identity lookups`);
    return batches;
  };
  const costs = {
    list: await cost(() => api(t, '/v1/catalog?q=mug&category=x&sort=price', { auth: admin })),
    create: await cost(() => api(t, '/v1/catalog', { method: 'POST', auth: admin, body: item(), headers: { 'idempotency-key': randomUUID() } })),
    get: await cost(() => api(t, `/v1/catalog/${x.id}`, { auth: admin })),
    update: await cost(() => api(t, `/v1/catalog/${x.id}`, { method: 'PATCH', auth: admin, headers: { 'if-match': '"v1"' }, body: { inventory: 4 } })),
    storefront_item: await cost(() => api(t, `/v1/storefront/catalog/${x.id}`)),
    archive: await cost(() => api(t, `/v1/catalog/${x.id}`, { method: 'DELETE', auth: admin })),
    storefront_list: await cost(() => api(t, '/v1/storefront/catalog')),
    storefront_profile: await cost(() => api(t, '/v1/storefront')),
  };
  assert.deepEqual(costs, { list: 1, create: 1, get: 1, update: 1, storefront_item: 1, archive: 1, storefront_list: 1, storefront_profile: 0 });
});

test("storefront answers: served again from the instance's memory while fresh, dropped by the team's writes", async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  const x = (await created(t, admin, item({ status: 'active', name: 'Kept mug' }))).doc;
  const batches = async (fn) => {
    const before = await sqlStats();
    const res = await fn();
    const body = await res.text();
    const after = await sqlStats();
    return { res, body, batches: after.sql_batches - before.sql_batches };
  };
  const path = `/v1/storefront/catalog?q=kept&limit=7`;
  const first = await batches(() => api(t, path));
  assert.equal(first.res.status, 200, first.body);
  assert.equal(first.batches, 1);
  assert.equal(first.res.headers.get('age'), null, 'a computed answer has no Age');
  const again = await batches(() => api(t, path));
  assert.equal(again.res.status, 200);
  assert.equal(again.body, first.body);
  assert.equal(again.res.headers.get('etag'), first.res.headers.get('etag'));
  assert.equal(again.res.headers.get('cache-control'), first.res.headers.get('cache-control'));
  const kept = runtime === 'workers';
  // Workers keeps an isolate between requests; Spin serves each in a fresh instance, so there
  // every answer is computed.
  assert.equal(again.batches, kept ? 0 : 1);
  if (kept) assert.match(again.res.headers.get('age'), /^\d+$/);
  else assert.equal(again.res.headers.get('age'), null);
  // The same path on another tenant is that tenant's answer, never this one's.
  const other = await createTenant();
  const elsewhere = await batches(() => api(other, path));
  assert.equal(elsewhere.batches, 1);
  assert.deepEqual(JSON.parse(elsewhere.body).items, []);
  // A shopper's write (a visit) keeps the answer; the team's write drops it, and the next
  // shopper sees the change at once.
  assert.equal((await api(t, '/v1/storefront/visits', { method: 'POST', body: { path: '/' } })).status < 300, true);
  assert.equal((await batches(() => api(t, path))).batches, kept ? 0 : 1);
  const renamed = await api(t, `/v1/catalog/${x.id}`, { method: 'PATCH', auth: admin, body: { name: 'Kept jug' } });
  assert.equal(renamed.status, 200);
  const changed = await batches(() => api(t, path));
  assert.equal(changed.batches, 1);
  assert.equal(changed.res.headers.get('age'), null);
  assert.equal(JSON.parse(changed.body).items[0].name, 'Kept jug');
  // A refused write (no such item) drops nothing.
  await assertProblem(await api(t, `/v1/catalog/${randomUUID()}`, { method: 'PATCH', auth: admin, body: { name: 'x' } }), 404, 'not_found');
  assert.equal((await batches(() => api(t, path))).batches, kept ? 0 : 1);
  // Concurrent shoppers on a kept answer: all get it, none makes a batch.
  const many = await batches(() => Promise.all(Array.from({ length: 20 }, () => api(t, path))).then(async (r) => {
    await Promise.all(r.slice(1).map((x) => x.text()));
    return r[0];
  }));
  assert.equal(many.batches, kept ? 0 : 20);
});

test('storefront answers: past the TTL, many concurrent shoppers make one batch between them', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  await created(t, admin, item({ status: 'active', name: 'Stampede mug' }));
  const path = '/v1/storefront/catalog?q=stampede';
  const first = await api(t, path);
  assert.equal(first.status, 200);
  const body = await first.text();
  // Past the default TTL (10 s): the answer is computed again, once.
  await new Promise((r) => setTimeout(r, 10_500));
  const before = await sqlStats();
  const all = await Promise.all(Array.from({ length: 20 }, () => api(t, path)));
  const bodies = await Promise.all(all.map((r) => r.text()));
  const after = await sqlStats();
  assert.deepEqual(all.map((r) => r.status), Array(20).fill(200));
  for (const b of bodies) assert.equal(b, body);
  const batches = after.sql_batches - before.sql_batches;
  assert.equal(batches, runtime === 'workers' ? 1 : 20, `${batches} batches for 20 concurrent shoppers`);
});

test('catalog images: only ready image files; the storefront returns presigned URLs', async () => {
  const t = await createTenant();
  const admin = await bearer(t, 'admin');
  const png = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex');
  const up = await api(t, '/v1/uploads', { method: 'POST', auth: admin, body: { filename: 'mug.png', content_type: 'image/png', size: png.length } });
  const upload = await up.json();
  assert.equal(up.status, 201, JSON.stringify(upload));
  const fileId = upload.file.id;
  const x = (await created(t, admin, item({ status: 'active' }))).doc;
  // Pending (not yet uploaded) files cannot be referenced; nothing changes.
  const early = await api(t, `/v1/catalog/${x.id}`, { method: 'PATCH', auth: admin, body: { image_file_ids: [fileId] } });
  await assertProblem(early, 422, 'image_not_ready');
  assert.equal((await (await api(t, `/v1/catalog/${x.id}`, { auth: admin })).json()).version, 1);
  const put = await fetch(upload.upload.put.url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: png });
  assert.equal(put.status, 200);
  assert.equal((await api(t, `/v1/uploads/${fileId}/complete`, { method: 'POST', auth: admin })).status, 200);
  const ok = await api(t, `/v1/catalog/${x.id}`, { method: 'PATCH', auth: admin, body: { image_file_ids: [fileId] } });
  assert.equal(ok.status, 200, await ok.text());
  // Another tenant's ready file is not this tenant's image.
  const other = await createTenant();
  await assertProblem(await api(other, '/v1/catalog', { method: 'POST', auth: await bearer(other, 'admin'), body: item({ image_file_ids: [fileId] }) }), 422, 'image_not_ready');
  const shown = await (await api(t, `/v1/storefront/catalog/${x.id}`)).json();
  assert.equal(shown.images.length, 1);
  assert.equal(shown.images[0].id, fileId);
  assert.ok(!('key' in shown.images[0]));
  const img = await fetch(shown.images[0].url);
  assert.equal(img.status, 200);
  assert.deepEqual(Buffer.from(await img.arrayBuffer()), png);
  const listed = await (await api(t, '/v1/storefront/catalog')).json();
  assert.equal(listed.items[0].images[0].id, fileId);
});

test('a forged cursor is a 400 before the listing reaches SQL, never a database error', async () => {
  const t = await createTenant();
  assert.equal((await api(t, '/v1/storefront')).status, 200);
  const id = randomUUID();
  const cursor = (parts) => Buffer.from(JSON.stringify(['c1', ...parts])).toString('base64url');
  for (const [sort, key] of [['-created_at', 'garbage'], ['-created_at', '2026-13-40T99:00:00.000000Z'], ['price', 'ten'], ['name', 'nul\u0000byte']]) {
    const before = await sqlStats();
    const res = await api(t, `/v1/storefront/catalog?sort=${sort}&cursor=${cursor([sort, key, id])}`);
    const p = await assertProblem(res, 400, 'validation_failed');
    assert.deepEqual(p.errors.map((e) => e.field), ['cursor'], JSON.stringify(p));
    assert.ok(!/syntax|invalid input|postgres/i.test(JSON.stringify(p)), JSON.stringify(p));
    // No batch at all; at most the tenant's own lookup (a fresh Spin instance has a cold cache).
    const after = await sqlStats();
    assert.equal(after.sql_batches, before.sql_batches, `no batch for ${sort} ${JSON.stringify(key)}`);
    assert.ok(after.sql_requests - before.sql_requests <= 1, 'at most the tenant lookup');
  }
  // A well-formed key of the right type is accepted (and simply pages past nothing).
  const ok = await api(t, `/v1/storefront/catalog?cursor=${cursor(['-created_at', '2026-01-01T00:00:00.000000Z', id])}`);
  assert.equal(ok.status, 200, await ok.text());
});
