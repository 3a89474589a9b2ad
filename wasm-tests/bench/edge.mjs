// End-to-end latency of the edge on each runtime of a running stack (`cargo xtask bench`):
// real HTTP to workerd and to wasmtime, real SQL proxy and Postgres, a tenant with 10 000
// catalog items. Sequential requests on loopback, so the numbers are per-request cost, not
// throughput. Prints one table per runtime.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { neon, neonConfig } from '@neondatabase/serverless';
import { sign, cognitoClaims } from '../tools/mint.mjs';

const stack = JSON.parse(readFileSync(process.env.EDGEFRONT_STACK, 'utf8'));
// Fixtures as the superuser, through the proxy's admin listener (the edge's allows only the
// app role); the superuser's connection string names that listener.
neonConfig.fetchEndpoint = stack.origin.admin_url;
const db = neon(stack.origin.superuser_connection_string, { authToken: stack.origin.admin_token });
const N = Number(process.env.BENCH_REQUESTS ?? 200);
const ITEMS = Number(process.env.BENCH_ITEMS ?? 10000);

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function get(base, host, path, headers = {}) {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.request({ agent, hostname: url.hostname, port: url.port, path, headers: { host, ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, ms: Number(process.hrtime.bigint() - t0) / 1e6, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end();
  });
}

const stats = async () => (await fetch(stack.origin.stats_url)).json();

async function seed() {
  const id = randomUUID();
  const slug = `bench-${id.slice(0, 8)}`;
  await db.query("INSERT INTO tenants (id, slug, name, tier) VALUES ($1, $2, 'Bench', 'enterprise')", [id, slug]);
  await db.query(
    `INSERT INTO catalog_items (tenant_id, sku, name, description, price, currency, category, inventory, status)
     SELECT $1, 'SKU-' || g,
            (ARRAY['Red','Blue','Green','Black','White'])[1 + g % 5] || ' ' ||
            (ARRAY['running shoe','wool hat','coffee mug','rain jacket','desk lamp','hammer','notebook'])[1 + g % 7] || ' ' || md5(g::text),
            'Item number ' || g, (g % 1000) / 7.0, 'USD',
            (ARRAY['shoes','hats','kitchen','apparel','home'])[1 + g % 5], g % 50,
            CASE WHEN g % 10 = 0 THEN 'draft' ELSE 'active' END
     FROM generate_series(1, $2::int) g`,
    [id, ITEMS],
  );
  // VACUUM also flushes the trigram index's pending list, as autovacuum would in production.
  await db.query('VACUUM ANALYZE catalog_items');
  const rare = (await db.query("SELECT substr(md5('4242'), 1, 6) AS w"))[0].w;
  return { id, slug, rare };
}

function summary(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { p50: q(0.5), p95: q(0.95), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

const tenant = await seed();
const claims = cognitoClaims(stack, 'tenants', { role: 'admin', extra: { 'custom:tenant_id': tenant.id } });
// Membership mode: the database, not the token, makes the caller an admin.
await db.query(
  `WITH u AS (INSERT INTO users (issuer, subject, email, email_verified) VALUES ($1, $2, $3, true) RETURNING id)
   INSERT INTO tenant_members (tenant_id, user_id, role) SELECT $4, id, 'admin' FROM u`,
  [stack.auth.issuers.tenants.issuer, claims.sub, claims.email, tenant.id],
);
const token = `Bearer ${await sign(stack, 'tenants', claims)}`;
console.log(`tenant ${tenant.slug}: ${ITEMS} items, ${N} sequential requests per case, keep-alive, loopback`);

for (const [name, rt] of Object.entries(stack.runtimes)) {
  // The runtime's own port (workerd's, not wrangler dev's proxy, which adds about 1 ms).
  const base = rt.direct_url ?? rt.url;
  const host = `${tenant.slug}.${stack.base_domain}:${new URL(base).port}`;
  // A cursor five pages deep, for the keyset case.
  let cursor = null;
  for (let i = 0; i < 5; i++) {
    const r = await get(base, host, `/v1/storefront/catalog?limit=20&sort=price${cursor ? `&cursor=${cursor}` : ''}`);
    cursor = JSON.parse(r.body).next_cursor;
  }
  const cases = [
    ['GET /healthz (no tenant, no I/O)', '/healthz', {}],
    ['storefront profile (cached tenant, 0 SQL)', '/v1/storefront', {}],
    ['storefront list, page 1', '/v1/storefront/catalog?limit=20', {}],
    ['storefront list, 6th page by cursor', `/v1/storefront/catalog?limit=20&sort=price&cursor=${cursor}`, {}],
    ['storefront search, selective word', `/v1/storefront/catalog?q=${tenant.rare}`, {}],
    ['storefront search, two common words', '/v1/storefront/catalog?q=red%20mug', {}],
    ['GET /v1/me with RS256 JWT (verify, 0 SQL)', '/v1/me', { authorization: token }],
    ['admin list with RS256 JWT', '/v1/catalog?limit=20', { authorization: token }],
  ];
  console.log(`\n== ${name} (${rt.served_by}) ==`);
  console.log('case'.padEnd(46), 'p50 ms'.padStart(8), 'p95 ms'.padStart(8), 'mean ms'.padStart(8), 'SQL/req'.padStart(8));
  for (const [label, path, headers] of cases) {
    for (let i = 0; i < 20; i++) await get(base, host, path, headers); // warm caches and JIT
    const before = await stats();
    const samples = [];
    for (let i = 0; i < N; i++) {
      const r = await get(base, host, path, headers);
      if (r.status !== 200) throw new Error(`${label}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
      samples.push(r.ms);
    }
    const after = await stats();
    const { p50, p95, mean } = summary(samples);
    const sql = (after.sql_requests - before.sql_requests) / N;
    console.log(label.padEnd(46), p50.toFixed(2).padStart(8), p95.toFixed(2).padStart(8), mean.toFixed(2).padStart(8), sql.toFixed(2).padStart(8));
  }
}
agent.destroy();
