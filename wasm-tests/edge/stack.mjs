// Shared by every black-box test: which runtime we are testing and the stack it runs on.
// `cargo xtask test` sets EDGEFRONT_STACK (the stack description), EDGEFRONT_RUNTIME and
// EDGEFRONT_BASE_URL; the same files run unchanged against Workers and Spin.
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import http from 'node:http';

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the suite with \`cargo xtask test\``);
  return v;
}

export const stack = JSON.parse(readFileSync(required('EDGEFRONT_STACK'), 'utf8'));
export const runtime = required('EDGEFRONT_RUNTIME');
export const baseUrl = required('EDGEFRONT_BASE_URL');

/**
 * One connection per request. Node's default agent keeps connections alive and reuses an idle
 * one, which the server may be closing at that moment: the request then fails with "socket hang
 * up" without having been answered (the keep-alive race node's documentation describes). The
 * suite sends requests, not connection-reuse tests.
 */
export const agent = new http.Agent({ keepAlive: false });

/**
 * A request to the edge with full control of the Host header (fetch forbids setting it).
 * `tenant` sends `Host: {tenant}.{base_domain}:{port}`; `host` sends it verbatim.
 * Resolves to a fetch-like response: status, headers (a Headers), text(), json(), arrayBuffer().
 */
export function edge(path, { tenant, host, method = 'GET', headers = {}, body } = {}) {
  const url = new URL(path, baseUrl);
  const h = { ...headers };
  if (host) h.host = host;
  else if (tenant) h.host = `${tenant}.${stack.base_domain}:${url.port}`;
  if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { hostname: url.hostname, port: url.port, path: url.pathname + url.search, method, headers: h, timeout: 15_000, agent },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          const hs = new Headers();
          for (const [k, v] of Object.entries(res.headers)) hs.set(k, Array.isArray(v) ? v.join(', ') : v);
          resolve({
            status: res.statusCode,
            headers: hs,
            text: async () => buf.toString('utf8'),
            json: async () => JSON.parse(buf.toString('utf8')),
            arrayBuffer: async () => buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length),
          });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${path}`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Asserts an RFC 7807 problem document and returns it. */
export async function assertProblem(res, status, code) {
  assert.equal(res.status, status);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  const body = await res.json();
  for (const m of ['type', 'title', 'status', 'detail', 'instance', 'code']) {
    assert.ok(m in body, `problem document lacks "${m}": ${JSON.stringify(body)}`);
  }
  assert.equal(body.status, status);
  assert.equal(body.code, code);
  return body;
}

// --- Fixtures that need the database: fresh tenants per test, so runtimes and reruns never
// share state. They go through our SQL proxy with the real @neondatabase/serverless driver.
import { neon, neonConfig } from '@neondatabase/serverless';
import { randomUUID } from 'node:crypto';
import { sign, cognitoClaims } from '../tools/mint.mjs';

// Two listeners of the proxy: the edge's (the app role only) and the admin one (the superuser
// only, with its own bearer token), which fixtures use. The driver's endpoint is global, so it
// routes by the connection string's address: the superuser's names the admin listener.
const adminAddress = new URL(stack.origin.superuser_connection_string).host;
neonConfig.fetchEndpoint = (host, port) =>
  `${host}:${port}` === adminAddress ? stack.origin.admin_url : stack.origin.url;
/** SQL as the superuser, through the proxy's admin listener (fixtures and inspection). */
export const adminDb = neon(stack.origin.superuser_connection_string, {
  authToken: stack.origin.admin_token,
});
const superuser = adminDb;

/** Creates an active tenant `{slug, id, tier}` with the given tier and settings. */
export async function createTenant({ tier = 'basic', settings = {}, prefix = 't' } = {}) {
  const id = randomUUID();
  const slug = `${prefix}-${runtime}-${id.slice(0, 8)}`;
  await superuser.query(
    'INSERT INTO tenants (id, slug, name, tier, settings) VALUES ($1, $2, $3, $4, $5::jsonb)',
    [id, slug, `Test ${slug}`, tier, JSON.stringify({ currency: 'EUR', ...settings })],
  );
  return { id, slug, tier };
}

const tenantOf = (tenant) => {
  const t = typeof tenant === 'string' ? stack.tenants.find((x) => x.slug === tenant) : tenant;
  if (!t) throw new Error(`no tenant ${tenant} in the stack`);
  return t;
};

/** The issuer URL of the tenants pool: users are keyed by (issuer, subject). */
export const tenantsIssuer = stack.auth.issuers.tenants.issuer;

/**
 * Registers a user of `issuer` (a stack issuer name, the tenants pool by default) directly in
 * the database (one SQL statement, before any request a test measures): a users row and, with a
 * `tenant` and `role`, a tenant_members row. Returns our user id.
 */
export async function registerUser({ issuer = 'tenants', sub, email = null, name = null, tenant, role }) {
  const rows = await superuser.query(
    `WITH u AS (
       INSERT INTO users (issuer, subject, email, email_verified, name) VALUES ($1, $2, $3, true, $4)
       ON CONFLICT (issuer, subject) DO UPDATE SET email = EXCLUDED.email, email_verified = true
       RETURNING id),
     m AS (
       INSERT INTO tenant_members (tenant_id, user_id, role)
       SELECT $5::uuid, id, $6 FROM u WHERE $6::text IS NOT NULL
       ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = EXCLUDED.role
       RETURNING user_id)
     SELECT id::text AS id FROM u`,
    [stack.auth.issuers[issuer].issuer, sub, email, name, tenant ? tenantOf(tenant).id : null, tenant ? role ?? null : null],
  );
  return rows[0].id;
}

/**
 * A member of `tenant` (a stack tenant slug or a created one) with `role`, registered in the
 * database (membership mode: the token alone grants nothing): `{auth, sub, email, userId}`.
 * `extra` overrides token claims (its `sub`/`email` also name the registered user).
 */
export async function member(tenant, role = 'admin', extra = {}) {
  const t = tenantOf(tenant);
  const sub = extra.sub ?? randomUUID();
  const email = extra.email ?? `${sub}@users.test`;
  const userId = await registerUser({ sub, email, tenant: t, role });
  const claims = cognitoClaims(stack, 'tenants', { role, sub, email, extra: { 'custom:tenant_id': t.id, ...extra } });
  return { auth: `Bearer ${await sign(stack, 'tenants', claims)}`, sub, email, userId };
}

/** `Authorization` for a tenants-pool user who is a `role` of `tenant` (see `member`). */
export async function bearer(tenant, role = 'admin', extra = {}) {
  return (await member(tenant, role, extra)).auth;
}

/**
 * A signed-in tenants-pool user with NO membership anywhere (and no row yet: the edge creates
 * it on first sight), e.g. an invitee or someone signing up: `{auth, sub, email}`. The ID token
 * carries no tenant claim and no groups; `emailVerified: false` for an unverified address.
 */
export async function signedIn({ email, sub = randomUUID(), name, emailVerified = true, extra = {} } = {}) {
  const mail = email ?? `${sub}@users.test`;
  const claims = cognitoClaims(stack, 'tenants', { role: null, sub, email: mail, name, emailVerified, extra });
  return { auth: `Bearer ${await sign(stack, 'tenants', claims)}`, sub, email: mail };
}

/** `Authorization` for a platform admin (platform pool, `platform-admin` group). */
export async function platformAdmin(extra = {}) {
  const claims = cognitoClaims(stack, 'platform', { role: 'platform-admin', email: 'platform-admin@edgefront.test', extra });
  return `Bearer ${await sign(stack, 'platform', claims)}`;
}

/** Publishes TXT records for `name` on the stack's fake DNS-over-HTTPS resolver ([] deletes). */
export async function setTxt(name, values) {
  const res = await fetch(stack.doh.records_url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, txt: values }),
  });
  if (res.status !== 200) throw new Error(`fake resolver: ${res.status} ${await res.text()}`);
}

/** How many requests the SQL proxy has served so far. */
export async function sqlRequests() {
  return (await sqlStats()).sql_requests;
}

/** `{sql_requests, sql_batches}` so far: every tenant-scoped statement runs in a batch; tenant
 * lookups (cached per instance) are single queries. */
export async function sqlStats() {
  return (await fetch(stack.origin.stats_url)).json();
}

function jsonRequest(path, where, { method = 'GET', auth, body, headers = {} } = {}) {
  const h = { ...headers };
  if (auth) h.authorization = auth;
  if (body !== undefined && !h['content-type']) h['content-type'] = 'application/json';
  return edge(path, {
    ...where,
    method,
    headers: h,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** A JSON request to a tenant's API. */
export function api(tenant, path, opts = {}) {
  return jsonRequest(path, { tenant: typeof tenant === 'string' ? tenant : tenant.slug }, opts);
}

/** A JSON request with a verbatim Host (a custom domain: pass `shop.example.test`, the port is added). */
export function onHost(hostname, path, opts = {}) {
  return jsonRequest(path, { host: `${hostname}:${new URL(baseUrl).port}` }, opts);
}

/** A JSON request to the platform host (`stack.platform_host`). */
export function platform(path, opts = {}) {
  return onHost(stack.platform_host, path, opts);
}
