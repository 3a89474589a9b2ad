// Uploads, black-box: presigned PUT and POST against the local S3 (s3s, which verifies SigV4
// and POST policies), completion, download, and every rejection — by S3 and by the API. The
// same expectations on every runtime.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { edge, assertProblem, stack, member } from './stack.mjs';

const MiB = 1024 * 1024;
const tenantId = (slug) => stack.tenants.find((t) => t.slug === slug).id;

/** A token of a registered `role` of `tenant` (membership mode: the database decides). */
async function token(tenant, { role = 'member', sub = randomUUID() } = {}) {
  const { auth } = await member(tenant, role, { sub });
  return auth.slice('Bearer '.length);
}

const tokens = {};
async function tok(tenant) {
  tokens[tenant] ??= await token(tenant, { role: 'admin' });
  return tokens[tenant];
}

async function api(method, path, { tenant = 'demo', auth, body, raw } = {}) {
  const headers = { authorization: `Bearer ${auth ?? (await tok(tenant))}` };
  let payload;
  if (body !== undefined || raw !== undefined) {
    headers['content-type'] = 'application/json';
    payload = raw ?? JSON.stringify(body);
  }
  return edge(path, { tenant, method, headers, body: payload });
}

async function json(res, status) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  return JSON.parse(text);
}

async function createUpload(body, opts = {}) {
  const res = await api('POST', '/v1/uploads', { ...opts, body });
  return json(res, 201);
}

const putBytes = (upload, bytes, contentType = upload.upload.put.headers['content-type'], url = upload.upload.put.url) =>
  fetch(url, { method: 'PUT', headers: { 'content-type': contentType }, body: bytes });

function postForm(upload, bytes, { fields = {}, filename = 'upload.bin' } = {}) {
  const form = new FormData();
  for (const [k, v] of Object.entries({ ...upload.upload.post.fields, ...fields })) form.append(k, v);
  form.append('file', new Blob([bytes], { type: upload.upload.post.fields['Content-Type'] }), filename);
  return fetch(upload.upload.post.url, { method: 'POST', body: form });
}

/**
 * The HTTP status of a request S3 should refuse. S3 may refuse a POST before reading its body
 * and close the connection, so the client sees the reset rather than the status: that counts
 * as refused too (each test then proves nothing was stored).
 */
async function refusal(request) {
  try {
    const res = await request;
    return res.status;
  } catch (e) {
    const code = e.cause?.code ?? '';
    assert.ok(['EPIPE', 'ECONNRESET', 'UND_ERR_SOCKET'].includes(code), `unexpected ${e} ${code}`);
    return 'closed';
  }
}

const complete = (id, opts) => api('POST', `/v1/uploads/${id}/complete`, opts);

async function download(file) {
  assert.ok(file.download, `no download link: ${JSON.stringify(file)}`);
  const res = await fetch(file.download.url);
  assert.equal(res.status, 200, await res.clone().text());
  return Buffer.from(await res.arrayBuffer());
}

test('upload through the presigned PUT, complete, download the same bytes', async () => {
  const bytes = randomBytes(70_000);
  const up = await createUpload({ filename: '../../Été\u202e photo.PNG', content_type: 'image/png', size: bytes.length });
  const { file, upload } = up;
  assert.equal(file.status, 'pending');
  assert.equal(file.filename, 'Été photo.PNG');
  assert.equal(file.key, `${tenantId('demo')}/${file.id}/t_photo.png`);
  // The object may be the declared size at most (the PUT signs exactly that length).
  assert.equal(upload.max_size, bytes.length);
  assert.ok(upload.put.url.includes('X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost'), upload.put.url);
  assert.ok(Date.parse(upload.expires_at) > Date.now() + 14 * 60_000, 'default expiry is 15 minutes');

  const put = await putBytes(up, bytes);
  assert.equal(put.status, 200, await put.text());

  const done = await json(await complete(file.id), 200);
  assert.equal(done.status, 'ready');
  assert.equal(done.size, bytes.length);
  assert.ok(done.etag, 'the ETag is recorded');
  // Completing again is harmless.
  assert.equal((await json(await complete(file.id), 200)).status, 'ready');

  const got = await json(await api('GET', `/v1/files/${file.id}`), 200);
  assert.equal(got.status, 'ready');
  const u = new URL(got.download.url);
  assert.equal(u.searchParams.get('response-content-disposition'), `attachment; filename="t_photo.png"; filename*=UTF-8''%C3%89t%C3%A9%20photo.PNG`);
  assert.ok(Number(u.searchParams.get('X-Amz-Expires')) <= 300, 'downloads are short-lived');
  assert.ok((await download(got)).equals(bytes), 'downloaded bytes differ');
});

test('upload through the presigned POST form, complete, download the same bytes', async () => {
  const bytes = randomBytes(12_345);
  const up = await createUpload({ filename: 'form.webp', content_type: 'image/webp', size: bytes.length });
  const policy = JSON.parse(Buffer.from(up.upload.post.fields.policy, 'base64').toString('utf8'));
  assert.deepEqual(
    policy.conditions.slice(0, 4),
    [{ 'Content-Type': 'image/webp' }, ['content-length-range', 1, bytes.length], { bucket: stack.s3.bucket }, { key: up.upload.post.fields.key }],
  );
  const res = await postForm(up, bytes);
  assert.ok([200, 201, 204].includes(res.status), `${res.status} ${await res.text()}`);
  const done = await json(await complete(up.file.id), 200);
  assert.equal(done.size, bytes.length);
  assert.equal(done.content_type, 'image/webp');
  assert.ok((await download(done)).equals(bytes));
});

test('S3 rejects a tampered URL: another key, or a changed disposition', async () => {
  const a = await createUpload({ filename: 'a.png', content_type: 'image/png', size: 10 });
  const b = await createUpload({ filename: 'b.png', content_type: 'image/png', size: 10 });
  // A's signature on B's (staging) key.
  const url = a.upload.put.url.replace(a.upload.post.fields.key, b.upload.post.fields.key);
  assert.notEqual(url, a.upload.put.url);
  const res = await putBytes(a, randomBytes(10), 'image/png', url);
  assert.equal(res.status, 403, await res.text());
  // A flipped signature character.
  const sig = new URL(a.upload.put.url).searchParams.get('X-Amz-Signature');
  const flipped = a.upload.put.url.replace(sig, (sig[0] === 'a' ? 'b' : 'a') + sig.slice(1));
  assert.equal((await putBytes(a, randomBytes(10), 'image/png', flipped)).status, 403);
  // Nothing reached B's key.
  await assertProblem(await complete(b.file.id), 409, 'upload_missing');

  // Download links: the disposition is signed too.
  assert.equal((await putBytes(a, randomBytes(10))).status, 200);
  const done = await json(await complete(a.file.id), 200);
  const dl = new URL(done.download.url);
  dl.searchParams.set('response-content-disposition', 'inline');
  assert.equal((await fetch(dl)).status, 403);
});

test('S3 rejects a presigned PUT with another content type', async () => {
  const up = await createUpload({ filename: 'c.png', content_type: 'image/png', size: 10 });
  const res = await putBytes(up, randomBytes(10), 'text/html');
  assert.equal(res.status, 403, await res.text());
  await assertProblem(await complete(up.file.id), 409, 'upload_missing');
});

test('S3 rejects an expired presigned URL and POST form', async () => {
  const up = await createUpload({ filename: 'late.png', content_type: 'image/png', size: 10, expires_in: 1 });
  assert.ok(up.upload.put.url.includes('X-Amz-Expires=1&'));
  await new Promise((r) => setTimeout(r, 2_500));
  const put = await putBytes(up, randomBytes(10));
  assert.equal(put.status, 403, await put.text());
  const post = await refusal(postForm(up, randomBytes(10)));
  assert.ok(post === 'closed' || (post >= 400 && post < 500), `${post}`);
  // The pending file expired with its URLs.
  await assertProblem(await complete(up.file.id), 410, 'upload_expired');
});

test('S3 rejects a POST over the size limit, a POST of another type and a POST to another key', async () => {
  // acme is on the basic tier: 5 MiB at most, which the policy pins.
  const over = await createUpload({ filename: 'big.png', content_type: 'image/png', size: 5 * MiB }, { tenant: 'acme' });
  const policy = JSON.parse(Buffer.from(over.upload.post.fields.policy, 'base64').toString('utf8'));
  assert.deepEqual(policy.conditions[1], ['content-length-range', 1, 5 * MiB]);
  const big = await refusal(postForm(over, randomBytes(5 * MiB + 1)));
  assert.ok(big === 400 || big === 'closed', `${big}`);
  const otherType = await refusal(postForm(over, randomBytes(10), { fields: { 'Content-Type': 'text/html' } }));
  assert.ok([400, 403, 'closed'].includes(otherType), `${otherType}`);
  await assertProblem(await complete(over.file.id, { tenant: 'acme' }), 409, 'upload_missing');

  const victim = await createUpload({ filename: 'v.png', content_type: 'image/png', size: 10 }, { tenant: 'acme' });
  for (const key of [victim.file.key, `${tenantId('demo')}/${randomUUID()}/x.png`]) {
    const res = await refusal(postForm(over, randomBytes(10), { fields: { key } }));
    assert.ok([400, 403, 'closed'].includes(res), `${res}`);
  }
  await assertProblem(await complete(victim.file.id, { tenant: 'acme' }), 409, 'upload_missing');
});

test('the API refuses sizes and types the tier does not allow', async () => {
  const tooBig = await api('POST', '/v1/uploads', { tenant: 'acme', body: { filename: 'x.png', content_type: 'image/png', size: 5 * MiB + 1 } });
  const p1 = await assertProblem(tooBig, 422, 'file_too_large');
  assert.match(p1.detail, /5242880/);
  const pdf = await api('POST', '/v1/uploads', { tenant: 'acme', body: { filename: 'x.pdf', content_type: 'application/pdf', size: 10 } });
  const p2 = await assertProblem(pdf, 422, 'content_type_not_allowed');
  assert.match(p2.detail, /image\/png/);
  // Premium (demo) accepts PDFs.
  await createUpload({ filename: 'x.pdf', content_type: 'application/pdf', size: 10 });
});

test('malformed upload requests list every field problem', async () => {
  const res = await api('POST', '/v1/uploads', { body: { filename: '../..', content_type: 'png', size: 0, extra: 1 } });
  const p = await assertProblem(res, 400, 'validation_failed');
  assert.deepEqual(
    p.errors.map((e) => [e.field, e.code]).sort(),
    [['content_type', 'invalid_value'], ['extra', 'unknown_field'], ['filename', 'invalid_value'], ['size', 'out_of_range']],
  );
  const noAuth = await edge('/v1/uploads', { tenant: 'demo', method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  await assertProblem(noAuth, 401, 'missing_token');
});

test('an object larger than declared (via PUT) is refused by S3: nothing to complete, 409', async () => {
  const up = await createUpload({ filename: 'liar.png', content_type: 'image/png', size: 10 }, { tenant: 'acme' });
  const big = await refusal(putBytes(up, randomBytes(5 * MiB + 1)));
  assert.ok(big === 403 || big === 'closed', `${big}`);
  // Nothing was stored; the file is still pending.
  await assertProblem(await complete(up.file.id, { tenant: 'acme' }), 409, 'upload_missing');
  assert.equal((await json(await api('GET', `/v1/files/${up.file.id}`, { tenant: 'acme' }), 200)).status, 'pending');
});

test("another tenant's file id is a 404 everywhere", async () => {
  const up = await createUpload({ filename: 'mine.png', content_type: 'image/png', size: 10 });
  for (const [method, path] of [
    ['GET', `/v1/files/${up.file.id}`],
    ['POST', `/v1/uploads/${up.file.id}/complete`],
    ['DELETE', `/v1/files/${up.file.id}`],
  ]) {
    await assertProblem(await api(method, path, { tenant: 'acme' }), 404, 'not_found');
  }
  await assertProblem(await api('GET', '/v1/files/not-a-uuid'), 404, 'not_found');
  // Still there for its owner.
  assert.equal((await json(await api('GET', `/v1/files/${up.file.id}`), 200)).id, up.file.id);
});

test('completing before uploading is a 409', async () => {
  const up = await createUpload({ filename: 'early.png', content_type: 'image/png', size: 10 });
  await assertProblem(await complete(up.file.id), 409, 'upload_missing');
});

test('files list newest first, page by cursor, filter by status', async () => {
  const sub = randomUUID();
  const auth = await token('acme', { sub });
  const made = [];
  for (let i = 0; i < 3; i++) made.push((await createUpload({ filename: `p${i}.png`, content_type: 'image/png', size: 5 }, { tenant: 'acme', auth })).file.id);
  const seen = [];
  let cursor;
  let pages = 0;
  do {
    const page = await json(await api('GET', `/v1/files?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { tenant: 'acme' }), 200);
    assert.ok(page.items.length <= 2);
    seen.push(...page.items);
    cursor = page.next_cursor;
    pages++;
  } while (cursor && pages < 500);
  const ids = seen.map((f) => f.id);
  assert.equal(new Set(ids).size, ids.length, 'no file twice');
  const pos = made.map((id) => ids.indexOf(id));
  assert.ok(pos.every((p) => p >= 0), 'every new file listed');
  assert.deepEqual(pos, [...pos].sort((a, b) => b - a), 'newest first');
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i - 1].created_at >= seen[i].created_at);
  assert.ok(seen.every((f) => f.key.startsWith(`${tenantId('acme')}/`)));
  const ready = await json(await api('GET', '/v1/files?status=ready&limit=100', { tenant: 'acme' }), 200);
  assert.ok(ready.items.every((f) => f.status === 'ready'));
  await assertProblem(await api('GET', '/v1/files?cursor=bogus', { tenant: 'acme' }), 400, 'validation_failed');
});

test('delete: only the uploader or an admin; signed S3 DELETE; then 404', async () => {
  const sub = randomUUID();
  const owner = await token('demo', { sub });
  const bytes = randomBytes(100);
  const up = await createUpload({ filename: 'gone.gif', content_type: 'image/gif', size: 100 }, { auth: owner });
  assert.equal((await putBytes(up, bytes)).status, 200);
  const done = await json(await complete(up.file.id, { auth: owner }), 200);
  const stranger = await token('demo', { role: 'member' });
  await assertProblem(await api('DELETE', `/v1/files/${up.file.id}`, { auth: stranger }), 403, 'insufficient_role');
  const del = await api('DELETE', `/v1/files/${up.file.id}`, { auth: owner });
  assert.equal(del.status, 204, await del.text());
  await assertProblem(await api('GET', `/v1/files/${up.file.id}`), 404, 'not_found');
  await assertProblem(await api('DELETE', `/v1/files/${up.file.id}`), 404, 'not_found');
  // The object itself is gone: the old download link finds nothing.
  const res = await fetch(done.download.url);
  assert.equal(res.status, 404);
});

test('the local S3 answers CORS, so a browser on a tenant origin can upload directly', async () => {
  const up = await createUpload({ filename: 'cors.png', content_type: 'image/png', size: 4 });
  const origin = `http://demo.${stack.base_domain}:8787`;
  const pre = await fetch(up.upload.put.url, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type' },
  });
  assert.ok(pre.status === 200 || pre.status === 204, `${pre.status}`);
  assert.equal(pre.headers.get('access-control-allow-origin'), origin);
  assert.match(pre.headers.get('access-control-allow-methods') ?? '', /PUT/);
  assert.match(pre.headers.get('access-control-allow-headers') ?? '', /content-type/i);
  const put = await fetch(up.upload.put.url, { method: 'PUT', headers: { origin, 'content-type': 'image/png' }, body: randomBytes(4) });
  assert.equal(put.status, 200);
  assert.equal(put.headers.get('access-control-allow-origin'), origin);
  assert.match(put.headers.get('access-control-expose-headers') ?? '', /etag/i);
  const postPre = await fetch(up.upload.post.url, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST' },
  });
  assert.equal(postPre.headers.get('access-control-allow-origin'), origin);
});

test('catalog images: the storefront shows an item\'s ready images in its order; a deleted one disappears', async () => {
  const ready = async (tenant, filename, contentType) => {
    const up = await createUpload({ filename, content_type: contentType, size: 3 }, { tenant });
    assert.equal((await putBytes(up, randomBytes(3))).status, 200);
    await json(await complete(up.file.id, { tenant }), 200);
    return up.file;
  };
  const b = await ready('demo', 'b.png', 'image/png');
  const pdf = await ready('demo', 'doc.pdf', 'application/pdf');
  const pending = (await createUpload({ filename: 'p.png', content_type: 'image/png', size: 3 })).file;
  const a = await ready('demo', 'a.webp', 'image/webp');
  const c = await ready('demo', 'c.gif', 'image/gif');
  const theirs = await ready('acme', 'theirs.png', 'image/png');
  const sku = `IMG-${randomUUID().slice(0, 8)}`;
  const body = (ids) => ({ sku, name: 'Framed print', price: '20', status: 'active', image_file_ids: ids });
  // Only the tenant's ready image files can be an item's images.
  for (const f of [pdf, pending, theirs, { id: randomUUID() }]) {
    await assertProblem(await api('POST', '/v1/catalog', { body: body([b.id, f.id]) }), 422, 'image_not_ready');
  }
  const item = await json(await api('POST', '/v1/catalog', { body: body([c.id, b.id, a.id]) }), 201);
  const shown = async () => {
    const one = await json(await edge(`/v1/storefront/catalog/${item.id}`, { tenant: 'demo' }), 200);
    const page = await json(await edge(`/v1/storefront/catalog?q=${sku}`, { tenant: 'demo' }), 200);
    assert.deepEqual(page.items.map((i) => i.id), [item.id]);
    assert.deepEqual(page.items[0].images, one.images, 'the listing and the item agree');
    for (const img of one.images) assert.ok(!('key' in img) && img.url.startsWith('http'), JSON.stringify(img));
    return one.images.map((img) => [img.id, img.content_type]);
  };
  assert.deepEqual(await shown(), [[c.id, 'image/gif'], [b.id, 'image/png'], [a.id, 'image/webp']]);
  assert.equal((await api('DELETE', `/v1/files/${b.id}`)).status, 204);
  assert.deepEqual(await shown(), [[c.id, 'image/gif'], [a.id, 'image/webp']]);
});
