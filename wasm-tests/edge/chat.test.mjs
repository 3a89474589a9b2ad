// AI chat, black-box against one runtime, with the stack's local OpenAI-compatible provider
// (real HTTP + SSE; markers in the message pick slow / error / cutoff / hang / fail modes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { adminDb, agent, api, assertProblem, bearer, createTenant, stack, baseUrl } from './stack.mjs';

const db = adminDb;

async function providerRequests() {
  return (await fetch(stack.ai.requests_url)).json();
}

/** The provider request whose last user message contains `marker`. */
async function promptFor(marker) {
  const all = await providerRequests();
  const req = all.reverse().find((r) => r.messages.at(-1).content.includes(marker));
  assert.ok(req, `the provider never saw ${marker}`);
  return req;
}

/**
 * POST a chat turn with `Accept: text/event-stream` and read events as they arrive.
 * Resolves to {status, headers, events: [{event, data, at}], end, problem}. `abortAfter`
 * destroys the connection after that many delta events.
 */
function streamChat(tenant, path, body, { auth, cookie, abortAfter } = {}) {
  const url = new URL(path, baseUrl);
  const payload = JSON.stringify(body);
  const headers = {
    host: `${tenant.slug}.${stack.base_domain}:${url.port}`,
    'content-type': 'application/json',
    accept: 'text/event-stream',
    'content-length': Buffer.byteLength(payload),
  };
  if (auth) headers.authorization = auth;
  if (cookie) headers.cookie = cookie;
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname: url.hostname, port: url.port, path, method: 'POST', headers, timeout: 20_000, agent }, (res) => {
      const events = [];
      let buf = '';
      let deltas = 0;
      const done = (extra = {}) => resolve({ status: res.statusCode, headers: res.headers, events, end: Date.now() - t0, ...extra });
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event) events.push({ event, data: data ? JSON.parse(data) : null, at: Date.now() - t0 });
          if (event === 'delta' && abortAfter && ++deltas >= abortAfter) {
            req.destroy();
            done({ aborted: true });
            return;
          }
        }
      });
      res.on('end', () => done());
      res.on('error', () => {});
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => (abortAfter ? undefined : reject(e)));
    req.write(payload);
    req.end();
  });
}

async function quota(tenant) {
  const rows = await db.query('SELECT limit_tokens::int AS "limit", used::int AS used, reserved::int AS reserved FROM ai_quota WHERE tenant_id = $1', [tenant.id]);
  return rows[0];
}

async function usage(tenant) {
  return db.query('SELECT outcome, charged_tokens::int AS charged, reserved_tokens::int AS reserved FROM ai_usage_log WHERE tenant_id = $1 ORDER BY created_at', [tenant.id]);
}

/** Polls until `check` passes (the settlement after a disconnect runs after the response). */
async function eventually(check, ms = 8000) {
  const t0 = Date.now();
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() - t0 > ms) throw e;
      await new Promise((r) => setTimeout(r, 150));
    }
  }
}

async function shop() {
  const t = await createTenant({ tier: 'premium' });
  await db.query(
    `INSERT INTO catalog_items (tenant_id, sku, name, description, price, currency, category, inventory, status)
     VALUES ($1, 'TRAIL-9', 'Trail running shoes', 'Grippy soles', 120, 'EUR', 'shoes', 4, 'active'),
            ($1, 'MUG-1', 'Ceramic coffee mug', 'Holds 300 ml', 9.5, 'EUR', 'kitchen', 0, 'active'),
            ($1, 'SECRET-1', 'Unreleased trail prototype', '', 999, 'EUR', 'shoes', 1, 'draft')`,
    [t.id],
  );
  return t;
}

test('answers stream: the first delta arrives long before the provider finishes', async (t0) => {
  const t = await shop();
  const auth = await bearer(t, 'member');
  const res = await streamChat(t, '/v1/chat', { message: 'Tell me a long story [slow]' }, { auth });
  assert.equal(res.status, 200, JSON.stringify(res.events));
  assert.match(res.headers['content-type'], /^text\/event-stream/);
  const deltas = res.events.filter((e) => e.event === 'delta');
  assert.ok(deltas.length >= 3, JSON.stringify(res.events));
  const done = res.events.at(-1);
  assert.equal(done.event, 'done');
  assert.ok(deltas[0].at < done.at / 2, `first delta at ${deltas[0].at} ms, done at ${done.at} ms`);
  t0.diagnostic(`first delta after ${deltas[0].at} ms, done after ${done.at} ms`);
  assert.equal(deltas.map((d) => d.data.text).join(''), 'Echo: Tell me a long story [slow]');
  assert.ok(done.data.conversation_id && done.data.assistant_message_id && done.data.user_message_id);
  assert.ok(done.data.usage.total_tokens > 0);
  assert.equal(done.data.responder, 'provider');
  const q = await quota(t);
  assert.equal(q.reserved, 0);
  assert.equal(q.used, done.data.usage.total_tokens);
});

test('memory: the second turn sends the first; grounding: matching active items only', async () => {
  const t = await shop();
  const auth = await bearer(t, 'member');
  const mark = randomUUID().slice(0, 8);
  const first = await api(t, '/v1/chat', { method: 'POST', auth, body: { message: `My name is Zed ${mark}` } });
  const one = await first.json();
  assert.equal(first.status, 200, JSON.stringify(one));
  assert.equal(one.message.content, `Echo: My name is Zed ${mark}`);
  const second = await api(t, '/v1/chat', { method: 'POST', auth, body: { conversation_id: one.conversation_id, message: `Do you sell trail shoes? ${mark}-2` } });
  assert.equal(second.status, 200, await second.text());
  const prompt = await promptFor(`${mark}-2`);
  const contents = prompt.messages.map((m) => m.content);
  assert.ok(contents.includes(`My name is Zed ${mark}`), 'the first user message is in memory');
  assert.ok(contents.includes(`Echo: My name is Zed ${mark}`), 'the first answer is in memory');
  const system = prompt.messages[0].content;
  assert.match(system, /Trail running shoes \(SKU TRAIL-9\): 120\.000 EUR, in stock/);
  assert.ok(!system.includes('prototype'), 'drafts never ground answers');
  assert.ok(!system.includes('coffee mug'), 'only matching items');
  assert.equal(prompt.stream, true);
  assert.equal(prompt.model, 'mock-model');
  // The conversation and its messages, for their owner only.
  const list = await (await api(t, '/v1/chat/conversations', { auth })).json();
  assert.ok(list.items.some((c) => c.id === one.conversation_id));
  const msgs = await (await api(t, `/v1/chat/conversations/${one.conversation_id}/messages`, { auth })).json();
  assert.deepEqual(msgs.items.map((m) => m.role), ['user', 'assistant', 'user', 'assistant']);
  const other = await bearer(t, 'member');
  await assertProblem(await api(t, `/v1/chat/conversations/${one.conversation_id}/messages`, { auth: other }), 404, 'not_found');
  assert.ok(!(await (await api(t, '/v1/chat/conversations', { auth: other })).json()).items.some((c) => c.id === one.conversation_id));
  await assertProblem(await api(t, '/v1/chat', { method: 'POST', auth: other, body: { conversation_id: one.conversation_id, message: 'hi' } }), 404, 'not_found');
});

test('quota: 20 concurrent turns at the edge of the limit never push used past it', async () => {
  // Each turn reserves its worst case (≈ 2.8k tokens with max_tokens 16): about 5 fit at once.
  const t = await createTenant({ settings: { limits: { ai_monthly_tokens: 15000 } } });
  const auth = await bearer(t, 'member');
  await api(t, '/v1/chat/conversations', { auth }); // warm caches
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) => api(t, '/v1/chat', { method: 'POST', auth, body: { message: `hello ${i}`, max_tokens: 16 } })),
  );
  const statuses = results.map((r) => r.status);
  assert.ok(statuses.every((s) => s === 200 || s === 429), statuses.join(','));
  assert.ok(statuses.includes(200));
  const q = await quota(t);
  assert.ok(q.used <= q.limit, JSON.stringify(q));
  assert.equal(q.reserved, 0);
  const log = await usage(t);
  assert.equal(log.length, statuses.filter((s) => s === 200).length);
  assert.equal(log.reduce((a, r) => a + r.charged, 0), q.used, 'used is exactly the logged charges');
  // Exhausted: a turn that cannot reserve gets 429 with when the quota resets.
  await db.query('UPDATE ai_quota SET used = limit_tokens WHERE tenant_id = $1', [t.id]);
  const refused = await api(t, '/v1/chat', { method: 'POST', auth, body: { message: 'one more' } });
  const p = await assertProblem(refused, 429, 'quota_exhausted');
  assert.match(p.detail, /resets at \d{4}-\d{2}-01T00:00:00Z/);
  assert.ok(Number(refused.headers.get('retry-after')) > 0);
});

test('every failure mode releases its reservation and logs the outcome', async () => {
  const t = await shop();
  const auth = await bearer(t, 'member');
  const fail = await api(t, '/v1/chat', { method: 'POST', auth, body: { message: 'x [fail]' } });
  await assertProblem(fail, 502, 'upstream_unavailable');
  const mid = await streamChat(t, '/v1/chat', { message: 'tell me more please [error]' }, { auth });
  assert.equal(mid.status, 200);
  assert.ok(mid.events.some((e) => e.event === 'delta'));
  assert.equal(mid.events.at(-1).event, 'error');
  assert.equal(mid.events.at(-1).data.code, 'upstream_unavailable');
  const cut = await api(t, '/v1/chat', { method: 'POST', auth, body: { message: 'tell me more please [cutoff]' } });
  await assertProblem(cut, 502, 'upstream_unavailable');
  const hang = await streamChat(t, '/v1/chat', { message: 'x [hang]' }, { auth });
  assert.equal(hang.events.at(-1).event, 'error');
  assert.equal(hang.events.at(-1).data.code, 'upstream_timeout');
  await eventually(async () => {
    const q = await quota(t);
    assert.equal(q.reserved, 0, JSON.stringify(q));
    assert.deepEqual((await usage(t)).map((r) => r.outcome), ['provider_error', 'provider_error', 'provider_error', 'timeout']);
  });
  // Nothing half-done was stored as a message.
  const convs = await db.query('SELECT count(*)::int AS n FROM messages WHERE tenant_id = $1', [t.id]);
  assert.equal(convs[0].n, 0);
});

test('a client that disconnects mid-stream: the reservation is settled anyway', async () => {
  const t = await shop();
  const auth = await bearer(t, 'member');
  const res = await streamChat(t, '/v1/chat', { message: 'a long answer please [slow]' }, { auth, abortAfter: 1 });
  assert.ok(res.aborted);
  await eventually(async () => {
    const log = await usage(t);
    assert.equal(log.length, 1);
    // The edge notices at its next write; a provider that finished first counts as ok.
    assert.ok(['client_disconnect', 'ok'].includes(log[0].outcome), log[0].outcome);
    assert.equal((await quota(t)).reserved, 0);
  });
});

test('anonymous visitors: signed cookie, own conversation only, stricter limits', async () => {
  const t = await shop();
  const first = await streamChat(t, '/v1/storefront/chat', { message: 'Any trail shoes?' });
  assert.equal(first.status, 200, JSON.stringify(first.events));
  const setCookie = first.headers['set-cookie']?.[0] ?? '';
  assert.match(setCookie, /^ef_visitor=[0-9a-f-]{36}\.[A-Za-z0-9_-]+; Path=\/v1\/storefront; Max-Age=\d+; HttpOnly; SameSite=Lax/);
  const cookie = setCookie.split(';')[0];
  const conv = first.events.at(-1).data.conversation_id;
  const again = await api(t, '/v1/storefront/chat', { method: 'POST', body: { conversation_id: conv, message: 'and mugs?' }, headers: { cookie } });
  assert.equal(again.status, 200, await again.text());
  assert.equal(again.headers.get('set-cookie'), null, 'a valid cookie is kept');
  const mine = await api(t, `/v1/storefront/chat/conversations/${conv}/messages`, { headers: { cookie } });
  assert.equal(mine.status, 200);
  assert.equal((await mine.json()).items.length, 4);
  // Another visitor, a forged cookie, or the same cookie on another tenant: not found.
  const stranger = await api(t, '/v1/storefront/chat', { method: 'POST', body: { conversation_id: conv, message: 'hi' } });
  await assertProblem(stranger, 404, 'not_found');
  const forged = cookie.replace(/\.[^.]+$/, '.AAAAAAAAAAAAAAAAAAAAAA');
  await assertProblem(await api(t, `/v1/storefront/chat/conversations/${conv}/messages`, { headers: { cookie: forged } }), 404, 'not_found');
  await assertProblem(await api(t, `/v1/storefront/chat/conversations/${conv}/messages`), 404, 'not_found');
  const other = await shop();
  await assertProblem(await api(other, `/v1/storefront/chat/conversations/${conv}/messages`, { headers: { cookie } }), 404, 'not_found');
  // Visitors get short answers: max_tokens is capped.
  const prompt = await promptFor('and mugs?');
  assert.ok(prompt.max_tokens <= 256, String(prompt.max_tokens));
  // Per-visitor hourly cap (set low for this tenant).
  const limited = await createTenant({ settings: { limits: { visitor_messages_per_hour: 1 } } });
  const ok = await api(limited, '/v1/storefront/chat', { method: 'POST', body: { message: 'hello' } });
  assert.equal(ok.status, 200);
  const c2 = ok.headers.get('set-cookie').split(';')[0];
  await assertProblem(await api(limited, '/v1/storefront/chat', { method: 'POST', body: { message: 'hello again' }, headers: { cookie: c2 } }), 429, 'visitor_limit');
});

test('bad input: empty 400, oversized 413, and nothing reserved', async () => {
  const t = await shop();
  const auth = await bearer(t, 'member');
  await assertProblem(await api(t, '/v1/chat', { method: 'POST', auth, body: { message: '   ' } }), 400, 'validation_failed');
  await assertProblem(await api(t, '/v1/chat', { method: 'POST', auth, body: {} }), 400, 'validation_failed');
  await assertProblem(await api(t, '/v1/chat', { method: 'POST', auth, body: { message: 'x'.repeat(9000) } }), 413, 'payload_too_large');
  await assertProblem(await api(t, '/v1/chat', { method: 'POST', auth, body: { message: 'hi', conversation_id: 'nope' } }), 400, 'validation_failed');
  await assertProblem(await api(t, '/v1/chat', { method: 'POST', body: { message: 'hi' } }), 401, 'missing_token');
  assert.equal(await quota(t), undefined, 'no quota row was even created');
});

test('the built-in local responder answers from the catalog, clearly marked', async () => {
  const t = await shop();
  await db.query(`UPDATE tenants SET settings = settings || '{"ai": {"responder": "local"}}'::jsonb WHERE id = $1`, [t.id]);
  const res = await streamChat(t, '/v1/storefront/chat', { message: 'Do you have trail shoes?' });
  assert.equal(res.status, 200);
  const text = res.events.filter((e) => e.event === 'delta').map((e) => e.data.text).join('');
  assert.match(text, /^\(Local assistant: no AI provider is configured/);
  assert.match(text, /Trail running shoes: 120\.000 EUR \(in stock\)/);
  assert.ok(!text.includes('prototype'));
  const done = res.events.at(-1);
  assert.equal(done.data.responder, 'local');
  assert.equal((await quota(t)).used, done.data.usage.total_tokens);
});
