// Issue 13, items 4 and 7: the SQL proxy is no open Postgres login gateway, and the deep health
// check is for operators only and never echoes backend text.
//
// Proxy: the edge's listener (stack.origin.url) allows only the app role on the app database;
// the superuser and every other role or database are 403 before any login. The admin listener
// (stack.origin.admin_url, the superuser only) needs its bearer token. Failed logins are backed
// off per role and client address: the throttle tests speak from their own loopback address
// (127.0.N.x), so the lockout they cause never touches the edge (127.0.0.1). No response of the
// proxy carries an Access-Control-* header. (Starting the proxy beyond loopback without a token
// is refused: origin/tests/listen.rs.)
//
// Health: `/healthz` stays public; `?deep=1` needs `Authorization: Bearer <OPERATOR_TOKEN>`
// (401 otherwise, before any backend call), and a failing dependency is summarised in a word.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { adminDb, agent, edge, assertProblem, runtime, sqlStats, stack } from './stack.mjs';

const operator = { authorization: `Bearer ${stack.operator_token}` };
const appUrl = new URL(stack.origin.app_connection_string);
const suUrl = new URL(stack.origin.superuser_connection_string);

/** A connection string for `user`:`password` on `database` (the proxy ignores the host). */
function conn(user, password, database = appUrl.pathname.slice(1)) {
  const u = new URL(appUrl);
  u.username = user;
  u.password = password;
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * One raw request to a proxy listener, optionally from another loopback address.
 * Resolves to {status, headers (plain object), body (parsed JSON or null), ms}.
 */
function proxy(url, { method = 'POST', connection, token, localAddress, headers = {}, query = 'SELECT 1 AS one' } = {}) {
  const u = new URL(url);
  const body = method === 'POST' ? JSON.stringify({ query, params: [] }) : undefined;
  const h = { ...headers };
  if (connection) h['neon-connection-string'] = connection;
  if (token) h.authorization = `Bearer ${token}`;
  if (body !== undefined) {
    h['content-type'] = 'application/json';
    h['content-length'] = Buffer.byteLength(body);
  }
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      { hostname: u.hostname, port: u.port, path: u.pathname, method, headers: h, localAddress, timeout: 15_000, agent },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed = null;
          try {
            parsed = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode, headers: res.headers, body: parsed, ms: performance.now() - started });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function assertNoCors(res, what) {
  const cors = Object.keys(res.headers).filter((k) => k.startsWith('access-control-'));
  assert.deepEqual(cors, [], `${what}: ${cors.join(', ')}`);
}

/** A loopback address of this run's own (127.0.N.x, N per runtime): its lockouts are its own. */
function ownClient() {
  const n = runtime === 'workers' ? 31 : 32;
  return `127.0.${n}.${2 + Math.floor(Math.random() * 250)}`;
}

// --- the proxy -------------------------------------------------------------------------------

test('the edge listener refuses the superuser and unknown roles and databases with 403, before any login', async () => {
  const cases = [
    // The superuser with its real password: refused all the same.
    ['superuser', conn('postgres', suUrl.password)],
    ['unknown role', conn(`nobody_${runtime}`, 'whatever')],
    ['app role, postgres database', conn(appUrl.username, appUrl.password, 'postgres')],
    ['app role, template1', conn(appUrl.username, appUrl.password, 'template1')],
  ];
  for (const [what, connection] of cases) {
    // Repeated well past the failed-login threshold: a refusal is not a login attempt, so it
    // neither reaches Postgres nor counts towards a lockout (never 429).
    for (let i = 0; i < 5; i++) {
      const res = await proxy(stack.origin.url, { connection });
      assert.equal(res.status, 403, `${what}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.code, '', `${what}: not a Postgres error`);
      assert.ok(!/password|authentication/i.test(res.body.message), res.body.message);
    }
  }
  // The app role on the app database is what the listener is for.
  const ok = await proxy(stack.origin.url, { connection: stack.origin.app_connection_string });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
});

test('the admin listener needs its own bearer token and allows only the superuser', async () => {
  const su = stack.origin.superuser_connection_string;
  assert.equal((await proxy(stack.origin.admin_url, { connection: su })).status, 401);
  assert.equal((await proxy(stack.origin.admin_url, { connection: su, token: 'wrong' })).status, 401);
  const ok = await proxy(stack.origin.admin_url, { connection: su, token: stack.origin.admin_token });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  const app = await proxy(stack.origin.admin_url, {
    connection: stack.origin.app_connection_string,
    token: stack.origin.admin_token,
  });
  assert.equal(app.status, 403);
});

test('no proxy response carries an Access-Control-* header; a preflight is just a 405', async () => {
  const origin = { origin: 'https://evil.example' };
  const preflight = await proxy(stack.origin.url, {
    method: 'OPTIONS',
    headers: {
      ...origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'neon-connection-string, authorization',
    },
  });
  assert.equal(preflight.status, 405);
  assert.equal(preflight.headers.allow, 'POST');
  assertNoCors(preflight, 'preflight');
  const ok = await proxy(stack.origin.url, { connection: stack.origin.app_connection_string, headers: origin });
  assert.equal(ok.status, 200);
  assertNoCors(ok, 'a successful query');
  assertNoCors(await proxy(stack.origin.url, { connection: conn('postgres', 'x'), headers: origin }), '403');
  assertNoCors(await proxy(stack.origin.url, { method: 'GET', headers: origin }), '405');
  assertNoCors(await proxy(new URL('/nope', stack.origin.url), { headers: origin }), '404');
  assertNoCors(
    await proxy(stack.origin.admin_url, { connection: stack.origin.superuser_connection_string, headers: origin }),
    'admin 401',
  );
});

test('repeated bad passwords are locked out with a fast 429, for that client only', async (t) => {
  const client = ownClient();
  const wrong = conn(appUrl.username, `wrong-${runtime}-${Date.now()}`);
  // Three failed logins reach Postgres (28P01)…
  const failed = [];
  for (let i = 0; i < 3; i++) {
    const res = await proxy(stack.origin.url, { connection: wrong, localAddress: client });
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal(res.body.code, '28P01');
    failed.push(res.ms);
  }
  // …then the role is locked for this client: 429 at once, with Retry-After, without asking
  // Postgres — the right password included, or the lockout would be an oracle for it.
  const locked = [];
  for (const connection of [wrong, wrong, stack.origin.app_connection_string]) {
    const res = await proxy(stack.origin.url, { connection, localAddress: client });
    assert.equal(res.status, 429, JSON.stringify(res.body));
    assert.ok(Number(res.headers['retry-after']) >= 1, `Retry-After: ${res.headers['retry-after']}`);
    locked.push(res.ms);
  }
  const slowest = Math.max(...locked);
  assert.ok(slowest < 200, `locked answers took up to ${slowest.toFixed(1)} ms`);
  const ms = (xs) => xs.map((x) => x.toFixed(1)).join(', ');
  t.diagnostic(`failed logins (Postgres): ${ms(failed)} ms; locked (429): ${ms(locked)} ms`);

  // Another client (the edge among them) is not affected: deep health logs in as the app role.
  const health = await edge('/healthz?deep=1', { tenant: 'demo', headers: operator });
  assert.equal(health.status, 200, await health.text());
  const other = await proxy(stack.origin.url, { connection: stack.origin.app_connection_string, localAddress: ownClient() });
  assert.equal(other.status, 200);

  // After the lockout (1 s for the first) the right password works again and clears the record.
  await new Promise((r) => setTimeout(r, 1100));
  const again = await proxy(stack.origin.url, { connection: stack.origin.app_connection_string, localAddress: client });
  assert.equal(again.status, 200, JSON.stringify(again.body));
  const fresh = await proxy(stack.origin.url, { connection: wrong, localAddress: client });
  assert.equal(fresh.status, 400, 'counting starts again after a success');
});

// --- /healthz --------------------------------------------------------------------------------

test('GET /healthz stays public and touches no backend', async () => {
  const before = await sqlStats();
  const res = await edge('/healthz', { tenant: 'demo' });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).checks, undefined);
  assert.equal((await sqlStats()).sql_requests, before.sql_requests);
});

test('GET /healthz?deep=1 without the operator token is 401, before any backend call', async () => {
  assert.ok(stack.operator_token, 'the stack sets OPERATOR_TOKEN');
  const before = await sqlStats();
  for (const headers of [
    {},
    { authorization: 'Bearer wrong-token-wrong-token' },
    { authorization: `Bearer ${stack.operator_token}x` },
    { authorization: stack.operator_token },
    { authorization: `Basic ${stack.operator_token}` },
  ]) {
    for (const host of ['demo', 'acme', 'no-such-tenant']) {
      const res = await edge('/healthz?deep=1', { tenant: host, headers });
      const body = await assertProblem(res, 401, 'missing_token');
      assert.equal(body.checks, undefined);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
    }
  }
  assert.equal((await sqlStats()).sql_requests, before.sql_requests, 'no SQL round trip');
});

test('GET /healthz?deep=1 with the operator token checks the database and storage', async () => {
  const res = await edge('/healthz?deep=1', { tenant: 'demo', headers: operator });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.deepEqual(
    Object.fromEntries(Object.entries(body.checks).map(([k, v]) => [k, v.status])),
    { database: 'ok', storage: 'ok' },
  );
});

test('a failing deep check says "refused", never the database\'s text', async () => {
  // The app role may not log in for a moment, and its pooled sessions end: the edge's next
  // login is refused by Postgres ("role … is not permitted to log in", SQLSTATE 28000).
  await adminDb.query('ALTER ROLE edgefront_app NOLOGIN');
  try {
    await adminDb.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'edgefront_app'",
    );
    await new Promise((r) => setTimeout(r, 100));
    const res = await edge('/healthz?deep=1', { tenant: 'demo', headers: operator });
    const text = await res.text();
    const body = JSON.parse(text);
    assert.equal(res.status, 503, text);
    assert.equal(body.code, 'dependency_unavailable');
    assert.deepEqual(body.failing, ['database']);
    assert.equal(body.checks.database.status, 'error');
    assert.equal(body.checks.database.error, 'refused');
    assert.equal(body.checks.storage.status, 'ok');
    for (const leak of ['edgefront_app', 'permitted', 'log in', '28000', 'FATAL', 'SQL proxy']) {
      assert.ok(!text.includes(leak), `"${leak}" leaked: ${text}`);
    }
  } finally {
    await adminDb.query('ALTER ROLE edgefront_app LOGIN');
  }
  const healthy = await edge('/healthz?deep=1', { tenant: 'demo', headers: operator });
  assert.equal(healthy.status, 200, await healthy.text());
});
