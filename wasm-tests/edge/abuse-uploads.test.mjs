// Upload abuse (issue 13, item 1), black-box against the local S3 (s3s verifies SigV4, signed
// headers and POST policies): a completed file cannot be overwritten, a presigned PUT stores
// exactly the declared size, pending uploads expire with their URLs, and a tenant's storage
// quota holds under concurrent presigns. The same expectations on every runtime.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { adminDb, api, assertProblem, bearer, createTenant, stack } from './stack.mjs';

const MiB = 1024 * 1024;

async function json(res, status) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  return JSON.parse(text);
}

/** A fresh tenant and an admin's `Authorization` for it. */
async function tenantWithAdmin(opts) {
  const t = await createTenant(opts);
  return { t, auth: await bearer(t, 'admin') };
}

const presign = (who, body) => api(who.t, '/v1/uploads', { method: 'POST', auth: who.auth, body });
const complete = (who, id) => api(who.t, `/v1/uploads/${id}/complete`, { method: 'POST', auth: who.auth });
const getFile = (who, id) => api(who.t, `/v1/files/${id}`, { auth: who.auth });

const put = (url, bytes, contentType) =>
  fetch(url, { method: 'PUT', headers: { 'content-type': contentType }, body: bytes });

function postForm(upload, bytes, fields = {}) {
  const form = new FormData();
  for (const [k, v] of Object.entries({ ...upload.post.fields, ...fields })) form.append(k, v);
  form.append('file', new Blob([bytes], { type: upload.post.fields['Content-Type'] }), 'f.bin');
  return fetch(upload.post.url, { method: 'POST', body: form });
}

/**
 * The status of a request S3 should refuse, or 'closed' when S3 refused before reading a large
 * body and dropped the connection (each test then proves nothing was stored).
 */
async function refusal(request) {
  try {
    const res = await request;
    await res.arrayBuffer().catch(() => {});
    return res.status;
  } catch (e) {
    const code = e.cause?.code ?? '';
    assert.ok(['EPIPE', 'ECONNRESET', 'UND_ERR_SOCKET'].includes(code), `unexpected ${e} ${code}`);
    return 'closed';
  }
}
const refused = (status) => status === 'closed' || (status >= 400 && status < 500);

/** The object key a presigned URL writes (path style: `/{bucket}/{key}`). */
const keyOf = (url) => decodeURIComponent(new URL(url).pathname.slice(`/${stack.s3.bucket}/`.length));

/** A SigV4-signed (header) HEAD of `key` on the local S3, as the operator: its status. */
async function s3Head(key) {
  const { endpoint, region, bucket, access_key_id: ak, secret_access_key: sk } = stack.s3;
  const url = new URL(`${endpoint}/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`);
  const date = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const day = date.slice(0, 8);
  const payload = createHash('sha256').update('').digest('hex');
  const headers = { host: url.host, 'x-amz-content-sha256': payload, 'x-amz-date': date };
  const names = Object.keys(headers).sort();
  const canonical = ['HEAD', url.pathname, '', ...names.map((n) => `${n}:${headers[n]}`), '', names.join(';'), payload].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', date, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  const hmac = (k, d) => createHmac('sha256', k).update(d).digest();
  const kSigning = hmac(hmac(hmac(hmac(`AWS4${sk}`, day), region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', kSigning).update(toSign).digest('hex');
  const { host, ...sent } = headers;
  const res = await fetch(url, {
    method: 'HEAD',
    headers: { ...sent, authorization: `AWS4-HMAC-SHA256 Credential=${ak}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}` },
  });
  return res.status;
}

async function download(file) {
  assert.ok(file.download, `no download link: ${JSON.stringify(file)}`);
  const res = await fetch(file.download.url);
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

test('a completed file cannot be overwritten: 50 MB to its old URLs, or to its key, is refused by S3', async () => {
  const who = await tenantWithAdmin({ tier: 'premium' }); // premium: up to 50 MiB per object
  const bytes = randomBytes(1000);
  const { file, upload } = await json(await presign(who, { filename: 'logo.png', content_type: 'image/png', size: bytes.length }), 201);
  assert.notEqual(keyOf(upload.put.url), file.key, 'the client never gets a URL for the file key');
  assert.equal(upload.post.fields.key, keyOf(upload.put.url));
  assert.equal((await put(upload.put.url, bytes, 'image/png')).status, 200);
  const done = await json(await complete(who, file.id), 200);
  assert.equal(done.status, 'ready');
  assert.equal(await s3Head(keyOf(upload.put.url)), 404, 'the staging object is deleted on complete');

  const big = Buffer.alloc(50 * MiB, 7);
  // The old PUT URL, within its TTL: another length fails its signature.
  assert.ok(refused(await refusal(put(upload.put.url, big, 'image/png'))));
  // The same signature on the file's own key.
  const onFileKey = upload.put.url.replace(encodeURI(keyOf(upload.put.url)), file.key);
  assert.notEqual(onFileKey, upload.put.url);
  assert.ok(refused(await refusal(put(onFileKey, big, 'image/png'))));
  // The POST form: over its size range, or aimed at the file's key.
  assert.ok(refused(await refusal(postForm(upload, big))));
  assert.ok(refused(await refusal(postForm(upload, bytes, { key: file.key }))));
  // What the old URL can still do (the declared length, to the staging key) changes nothing.
  assert.equal((await put(upload.put.url, randomBytes(1000), 'image/png')).status, 200);
  const again = await json(await complete(who, file.id), 200);
  assert.equal(again.etag, done.etag);
  assert.equal(again.size, 1000);

  const got = await json(await getFile(who, file.id), 200);
  assert.ok((await download(got)).equals(bytes), 'the stored object changed');
});

test('a presigned PUT stores exactly the declared size: another Content-Length is refused by S3', async () => {
  const who = await tenantWithAdmin({ tier: 'premium' });
  const { file, upload } = await json(await presign(who, { filename: 'exact.png', content_type: 'image/png', size: 100 }), 201);
  assert.equal(upload.put.headers['content-length'], '100');
  assert.match(upload.put.url, /X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost&/);
  for (const n of [101, 99]) {
    const res = await put(upload.put.url, randomBytes(n), 'image/png');
    assert.equal(res.status, 403, `${n} bytes: ${await res.text()}`);
  }
  assert.ok(refused(await refusal(put(upload.put.url, randomBytes(5 * MiB), 'image/png'))));
  await assertProblem(await complete(who, file.id), 409, 'upload_missing');
  // The form's range ends at the declared size too.
  const policy = JSON.parse(Buffer.from(upload.post.fields.policy, 'base64').toString('utf8'));
  assert.deepEqual(policy.conditions[1], ['content-length-range', 1, 100]);
  assert.ok(refused(await refusal(postForm(upload, randomBytes(101)))));
  await assertProblem(await complete(who, file.id), 409, 'upload_missing');
  // The declared size goes through.
  assert.equal((await put(upload.put.url, randomBytes(100), 'image/png')).status, 200);
  assert.equal((await json(await complete(who, file.id), 200)).size, 100);
});

test('a pending upload past its TTL is gone: never completable, row expired, staging object deleted', async () => {
  const who = await tenantWithAdmin({ tier: 'premium' });
  const { file, upload } = await json(
    await presign(who, { filename: 'late.png', content_type: 'image/png', size: 10, expires_in: 2 }), 201);
  assert.equal(file.status, 'pending');
  assert.ok(Date.parse(file.expires_at) <= Date.now() + 3_000, file.expires_at);
  const staging = keyOf(upload.put.url);
  assert.equal((await put(upload.put.url, randomBytes(10), 'image/png')).status, 200);
  assert.equal(await s3Head(staging), 200);
  await new Promise((r) => setTimeout(r, 3_000));

  // Uploaded in time, but not completed in time.
  await assertProblem(await complete(who, file.id), 410, 'upload_expired');
  // The next presign of the tenant sweeps it.
  await json(await presign(who, { filename: 'next.png', content_type: 'image/png', size: 10 }), 201);
  assert.equal(await s3Head(staging), 404, 'the staging object is deleted');
  const row = await json(await getFile(who, file.id), 200);
  assert.equal(row.status, 'expired');
  assert.equal(row.download, null);
  await assertProblem(await complete(who, file.id), 410, 'upload_expired');
  const listed = await json(await api(who.t, '/v1/files?limit=100', { auth: who.auth }), 200);
  assert.ok(!listed.items.some((f) => f.id === file.id), 'expired uploads are not listed');
  assert.equal(await s3Head(file.key), 404, 'nothing at the file key either');
});

test('concurrent presigns against a small storage quota never exceed it', async () => {
  const quota = 10_000;
  const who = await tenantWithAdmin({ tier: 'basic', settings: { limits: { max_storage_bytes: quota } } });
  const usage = await json(await api(who.t, '/v1/usage', { auth: who.auth }), 200);
  assert.equal(usage.storage_bytes.limit, quota);

  // One ready file of 3,000 bytes counts by its size.
  const first = await json(await presign(who, { filename: 'a.png', content_type: 'image/png', size: 3000 }), 201);
  assert.equal((await put(first.upload.put.url, randomBytes(3000), 'image/png')).status, 200);
  await json(await complete(who, first.file.id), 200);

  const answers = await Promise.all(
    Array.from({ length: 24 }, (_, i) => presign(who, { filename: `p${i}.png`, content_type: 'image/png', size: 1000 })),
  );
  const created = answers.filter((r) => r.status === 201).length;
  const refusedAnswers = answers.filter((r) => r.status !== 201);
  assert.equal(created, 7, `3,000 ready + 7 × 1,000 pending fill ${quota}; ${created} were created`);
  for (const r of refusedAnswers) {
    const p = await assertProblem(r, 403, 'tier_limit_reached');
    assert.equal(p.resource, 'storage_bytes');
    assert.equal(p.limit, quota);
  }
  // Even one byte more is refused now; the usage reports the ready bytes against the quota.
  await assertProblem(await presign(who, { filename: 'x.png', content_type: 'image/png', size: 1 }), 403, 'tier_limit_reached');
  const after = await json(await api(who.t, '/v1/usage', { auth: who.auth }), 200);
  assert.deepEqual(after.storage_bytes, { used: 3000, limit: quota });
  assert.deepEqual(await countedStorage(who.t.id), { counted: '10000', truth: '10000' });
});

/** The tenant's counted storage (public.file_storage) and what its files say it must be. */
async function countedStorage(tenantId) {
  const [row] = await adminDb`
    SELECT (SELECT bytes FROM public.file_storage WHERE tenant_id = ${tenantId})::text AS counted,
           (SELECT coalesce(sum(public.file_counted_bytes(f)), 0) FROM public.files f
            WHERE f.tenant_id = ${tenantId})::text AS truth`;
  return row;
}

test('the quota gets back what is deleted and what expires, and its counter matches the files', async () => {
  const quota = 5_000;
  const who = await tenantWithAdmin({ tier: 'basic', settings: { limits: { max_storage_bytes: quota } } });
  const png = (filename, size, extra = {}) => presign(who, { filename, content_type: 'image/png', size, ...extra });

  // A ready file of 2,000 bytes and 11 pending uploads of 200 that expire in 2 s.
  const ready = await json(await png('ready.png', 2000), 201);
  assert.equal((await put(ready.upload.put.url, randomBytes(2000), 'image/png')).status, 200);
  await json(await complete(who, ready.file.id), 200);
  const lapsing = await Promise.all(
    Array.from({ length: 11 }, async (_, i) => json(await png(`lapsing${i}.png`, 200, { expires_in: 2 }), 201)),
  );
  // 4,200 counted: 801 more is refused, whether sent alone or with others at once.
  const over = await Promise.all([png('a.png', 801), png('b.png', 801), png('c.png', 801)]);
  for (const r of over) await assertProblem(r, 403, 'tier_limit_reached');
  assert.deepEqual(await countedStorage(who.t.id), { counted: '4200', truth: '4200' });

  // Past their expires_at the pending uploads no longer count. The next presign sweeps 10 of
  // them (marked expired, uncounted); the 11th, not yet swept, is discounted all the same.
  await new Promise((r) => setTimeout(r, 3_000));
  const after = await json(await png('after.png', 3000), 201);
  const statuses = await Promise.all(lapsing.map(async (l) => (await json(await getFile(who, l.file.id), 200)).status));
  assert.equal(statuses.filter((s) => s === 'expired').length, 10, statuses.join());
  // 2,000 ready + 3,000 pending = the quota: one byte more is refused.
  await assertProblem(await png('one.png', 1), 403, 'tier_limit_reached');

  // Deleting gives back a ready file's size and a pending upload's declared size.
  const del = (id) => api(who.t, `/v1/files/${id}`, { method: 'DELETE', auth: who.auth });
  assert.equal((await del(ready.file.id)).status, 204);
  await json(await png('two.png', 2000), 201);
  assert.equal((await del(after.file.id)).status, 204);
  await json(await png('three.png', 3000), 201);
  await assertProblem(await png('four.png', 1), 403, 'tier_limit_reached');
  assert.deepEqual(await countedStorage(who.t.id), { counted: '5000', truth: '5000' });
});

test('tier quotas: basic 1 GiB, premium 20 GiB, enterprise unlimited', async () => {
  for (const [tier, limit] of [['basic', 1024 * MiB], ['premium', 20 * 1024 * MiB], ['enterprise', null]]) {
    const who = await tenantWithAdmin({ tier });
    const usage = await json(await api(who.t, '/v1/usage', { auth: who.auth }), 200);
    assert.equal(usage.storage_bytes.limit, limit, tier);
  }
});
