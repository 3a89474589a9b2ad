// Visitor chat cannot drain a tenant's AI quota (issue 13, item 2): visitor limits count
// reservations of every outcome under the quota row's lock, anonymous visitors share a monthly
// budget inside the tenant's, and visitor chat is limited per client IP as well as per cookie.
// Black-box against one runtime; the client IP comes in `cf-connecting-ip` (CLIENT_IP_HEADER's
// default: wrangler dev keeps a client's own header and sets the peer address otherwise; Spin
// trusts the configured header alone).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { adminDb as db, agent, api, assertProblem, bearer, createTenant, stack, baseUrl } from './stack.mjs';

/** A visitor turn from `ip` (a fresh visitor unless `cookie`). */
function visitorChat(t, message, { ip, cookie, headers = {} } = {}) {
  const h = { ...headers };
  if (ip) h['cf-connecting-ip'] = ip;
  if (cookie) h.cookie = cookie;
  return api(t, '/v1/storefront/chat', { method: 'POST', body: { message }, headers: h });
}

/** A streamed visitor turn whose connection is dropped after the first delta. */
function abandonedChat(t, message, { ip, cookie }) {
  const url = new URL('/v1/storefront/chat', baseUrl);
  const payload = JSON.stringify({ message });
  const headers = {
    host: `${t.slug}.${stack.base_domain}:${url.port}`,
    'content-type': 'application/json',
    accept: 'text/event-stream',
    'content-length': Buffer.byteLength(payload),
    'cf-connecting-ip': ip,
  };
  if (cookie) headers.cookie = cookie;
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers, timeout: 20_000, agent }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buf += chunk;
        if (buf.includes('event: delta')) {
          req.destroy();
          resolve({ status: res.statusCode, aborted: true });
        }
      });
      res.on('end', () => resolve({ status: res.statusCode, aborted: false, body: buf }));
      res.on('error', () => {});
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
    req.write(payload);
    req.end();
  });
}

async function quota(t) {
  const rows = await db.query(
    `SELECT limit_tokens::int AS "limit", used::int AS used, reserved::int AS reserved,
            visitor_used::int AS visitor_used, visitor_reserved::int AS visitor_reserved,
            visitor_turns::int AS visitor_turns
     FROM ai_quota WHERE tenant_id = $1`,
    [t.id],
  );
  return rows[0];
}

async function memberChatWorks(t) {
  const auth = await bearer(t, 'member');
  const res = await api(t, '/v1/chat', { method: 'POST', auth, body: { message: 'team question', max_tokens: 16 } });
  assert.equal(res.status, 200, await res.text());
}

/** Polls until `check` passes (settlement after a disconnect runs after the response). */
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

test('30 parallel cookieless visitor chats with a visitor budget of 3 turns: at most 3 answers, members still chat', async (t0) => {
  // Premium: the visitors' token budget (a fifth of 1,000,000) is not what refuses them here.
  const t = await createTenant({ tier: 'premium', settings: { limits: { visitor_monthly_turns: 3 } } });
  await api(t, '/v1/storefront'); // warm the tenant cache
  const results = await Promise.all(
    Array.from({ length: 30 }, (_, i) => visitorChat(t, `hello ${i}`, { ip: `198.51.100.${i + 1}` })),
  );
  const statuses = results.map((r) => r.status);
  const answered = statuses.filter((s) => s === 200).length;
  t0.diagnostic(`statuses: ${statuses.join(',')}`);
  assert.ok(answered >= 1 && answered <= 3, statuses.join(','));
  for (const r of results.filter((r) => r.status !== 200)) {
    const p = await assertProblem(r, 429, 'quota_exhausted');
    assert.match(p.detail, /visitor messages it can this month; it resets at \d{4}-\d{2}-01T00:00:00Z/);
    assert.ok(!/\d+ of \d+ tokens/.test(p.detail), 'visitors are not told the tenant\'s numbers');
    assert.ok(Number(r.headers.get('retry-after')) > 0);
  }
  const q = await quota(t);
  assert.equal(q.visitor_turns, answered);
  assert.equal(q.reserved, 0);
  // The team's own chat is untouched by the visitors' budget.
  await memberChatWorks(t);
});

test('the visitors\' token budget (default a fifth of the month) refuses visitors, not members', async () => {
  // 15,000 tokens a month: visitors get 3,000, less than one visitor turn's reservation (≈ 3,060).
  const t = await createTenant({ settings: { limits: { ai_monthly_tokens: 15000 } } });
  const res = await visitorChat(t, 'hi', { ip: '198.51.100.1' });
  await assertProblem(res, 429, 'quota_exhausted');
  await memberChatWorks(t);
  // An explicit budget applies as set.
  const u = await createTenant({ settings: { limits: { ai_monthly_tokens: 15000, visitor_monthly_tokens: 9000 } } });
  const ok = await visitorChat(u, 'hi', { ip: '198.51.100.1' });
  assert.equal(ok.status, 200, await ok.text());
  const q = await quota(u);
  assert.ok(q.visitor_used > 0 && q.visitor_used === q.used, JSON.stringify(q));
  assert.equal(q.visitor_reserved, 0);
});

test('one client IP with fresh cookies trips the per-IP limit; other IPs still chat', async () => {
  const t = await createTenant({ settings: { limits: { visitor_messages_per_ip_per_hour: 3 } } });
  const ip = '203.0.113.9';
  for (let i = 0; i < 3; i++) {
    const r = await visitorChat(t, `hi ${i}`, { ip });
    assert.equal(r.status, 200, await r.text());
    assert.ok(r.headers.get('set-cookie'), 'each turn is a new visitor');
  }
  const refused = await visitorChat(t, 'once more', { ip });
  const p = await assertProblem(refused, 429, 'visitor_limit');
  assert.equal(p.detail, 'Too many messages come from your network; try again later.');
  const retry = Number(refused.headers.get('retry-after'));
  assert.ok(retry > 3500 && retry <= 3600, String(retry));
  // Another client is not affected; no raw address is stored.
  const other = await visitorChat(t, 'hi', { ip: '203.0.113.10' });
  assert.equal(other.status, 200, await other.text());
  const stored = await db.query('SELECT count(*)::int AS n FROM ai_reservations WHERE tenant_id = $1 AND client_hash LIKE $2', [t.id, '%203.0.113%']);
  assert.equal(stored[0].n, 0);
  const keys = await db.query('SELECT count(DISTINCT client_hash)::int AS n FROM ai_reservations WHERE tenant_id = $1', [t.id]);
  assert.equal(keys[0].n, 2);
});

test('failed and disconnected visitor turns count against the visitor\'s limit', async () => {
  const t = await createTenant({ settings: { limits: { visitor_messages_per_hour: 3 } } });
  const ip = '192.0.2.77';
  const first = await visitorChat(t, 'hello', { ip });
  assert.equal(first.status, 200, await first.text());
  const cookie = first.headers.get('set-cookie').split(';')[0];
  await assertProblem(await visitorChat(t, 'x [fail]', { ip, cookie }), 502, 'upstream_unavailable');
  const gone = await abandonedChat(t, 'a long answer please [slow]', { ip, cookie });
  assert.ok(gone.aborted, JSON.stringify(gone));
  // Only the first turn stored messages; all three reserved.
  const refused = await visitorChat(t, 'one more', { ip, cookie });
  const p = await assertProblem(refused, 429, 'visitor_limit');
  assert.equal(p.detail, 'You have sent too many messages; try again later.');
  assert.ok(Number(refused.headers.get('retry-after')) > 0);
  await eventually(async () => {
    const q = await quota(t);
    assert.equal(q.reserved, 0, JSON.stringify(q));
    assert.equal(q.visitor_turns, 3);
  });
});

test('failed visitor turns count against the tenant-wide visitor limit', async () => {
  const t = await createTenant({ settings: { limits: { visitor_tenant_messages_per_hour: 2 } } });
  await assertProblem(await visitorChat(t, 'x [fail]', { ip: '192.0.2.1' }), 502, 'upstream_unavailable');
  await assertProblem(await visitorChat(t, 'y [fail]', { ip: '192.0.2.2' }), 502, 'upstream_unavailable');
  const p = await assertProblem(await visitorChat(t, 'hello', { ip: '192.0.2.3' }), 429, 'visitor_limit');
  assert.equal(p.detail, "This store's assistant is busy; try again later.");
  await memberChatWorks(t);
});
