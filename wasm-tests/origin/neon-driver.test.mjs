// Proof that the real `@neondatabase/serverless` driver works against edgefront-origin:
// type round-trips, batch transactions, error fields, session hygiene of pooled connections,
// the tenancy migration's row-level security, and the statement timeout.
//
// Needs EDGEFRONT_STACK=<stack.json> with stack.origin.{url, app_connection_string, admin_url,
// admin_token, superuser_connection_string} (optional: bearer_token, max_request_bytes);
// skipped otherwise. The app role goes through the edge's listener (it allows only that role),
// the superuser through the admin listener, which its connection string names.
// The origin must run with --statement-timeout-ms 2000 (or less).

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { neon, neonConfig, NeonDbError } from '@neondatabase/serverless';

const stackPath = process.env.EDGEFRONT_STACK;
const skip = stackPath ? false : 'EDGEFRONT_STACK is not set';
const stack = stackPath ? JSON.parse(readFileSync(stackPath, 'utf8')) : { origin: {} };
const origin = stack.origin ?? {};

const adminAddress = skip ? null : new URL(origin.superuser_connection_string).host;
if (!skip) {
  neonConfig.fetchEndpoint = (host, port) =>
    `${host}:${port}` === adminAddress ? origin.admin_url : origin.url;
}

const opts = origin.bearer_token ? { authToken: origin.bearer_token } : {};
const app = skip ? null : neon(origin.app_connection_string, opts);
const su = skip ? null : neon(origin.superuser_connection_string, { authToken: origin.admin_token });
const fullApp = skip ? null : neon(origin.app_connection_string, { ...opts, fullResults: true });

// Unique names so parallel or repeated runs never collide.
const run = `${process.pid}_${Date.now().toString(36)}`;

/** Runs `fn` and returns the NeonDbError it must throw. */
async function dbError(fn) {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof NeonDbError, `expected NeonDbError, got ${e?.constructor?.name}: ${e}`);
    return e;
  }
  assert.fail('expected the query to fail');
}

function authHeaders() {
  return origin.bearer_token ? { Authorization: `Bearer ${origin.bearer_token}` } : {};
}

describe('edgefront-origin with @neondatabase/serverless', { skip }, () => {
  test('result values of every common type parse like on Neon', async () => {
    const [row] = await app.query(`
      SELECT 7::int2 AS i2, 42::int4 AS i4, 9007199254740993::int8 AS i8,
             1.50::numeric AS num, 1.5::float4 AS f4, 0.1::float8 AS f8,
             true AS yes, false AS no,
             'it''s "quoted" \\ back'::text AS txt, 'abc'::varchar(10) AS vc,
             'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id,
             '{"a":[1,2],"b":null}'::json AS js, '{"b": {"c": true}}'::jsonb AS jb,
             '2024-01-02 03:04:05.678+00'::timestamptz AS tstz,
             '2024-01-02 03:04:05'::timestamp AS ts,
             '2024-01-02'::date AS d,
             '\\x0102ff'::bytea AS bin,
             '{1,2,NULL}'::int[] AS ints,
             ARRAY['a"b', 'c\\d', NULL, 'x,y', ''] AS texts,
             ARRAY[true, false] AS bools,
             NULL::text AS nothing`);
    assert.equal(row.i2, 7);
    assert.equal(row.i4, 42);
    assert.equal(row.i8, '9007199254740993');
    assert.equal(row.num, '1.50');
    assert.equal(row.f4, 1.5);
    assert.equal(row.f8, 0.1);
    assert.equal(row.yes, true);
    assert.equal(row.no, false);
    assert.equal(row.txt, 'it\'s "quoted" \\ back');
    assert.equal(row.vc, 'abc');
    assert.equal(row.id, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    assert.deepEqual(row.js, { a: [1, 2], b: null });
    assert.deepEqual(row.jb, { b: { c: true } });
    assert.ok(row.tstz instanceof Date);
    assert.equal(row.tstz.getTime(), Date.UTC(2024, 0, 2, 3, 4, 5, 678));
    assert.ok(row.ts instanceof Date);
    assert.equal(row.ts.getTime(), new Date(2024, 0, 2, 3, 4, 5).getTime());
    assert.ok(row.d instanceof Date);
    assert.equal(row.d.getTime(), new Date(2024, 0, 2).getTime());
    assert.ok(Buffer.isBuffer(row.bin));
    assert.deepEqual([...row.bin], [1, 2, 255]);
    assert.deepEqual(row.ints, [1, 2, null]);
    assert.deepEqual(row.texts, ['a"b', 'c\\d', null, 'x,y', '']);
    assert.deepEqual(row.bools, [true, false]);
    assert.equal(row.nothing, null);
  });

  test('raw field metadata and text output are exact', async () => {
    const r = await fullApp.query(
      `SELECT 42::int4 AS i4, 1.50::numeric(5,2) AS n, '{"a": 1}'::jsonb AS j, '\\x01ff'::bytea AS b`,
    );
    assert.equal(r.command, 'SELECT');
    assert.equal(r.rowCount, 1);
    assert.deepEqual(
      r.fields.map((f) => [f.name, f.dataTypeID, f.dataTypeSize, f.dataTypeModifier, f.format]),
      [
        ['i4', 23, 4, -1, 'text'],
        ['n', 1700, -1, (5 << 16) + 2 + 4, 'text'],
        ['j', 3802, -1, -1, 'text'],
        ['b', 17, -1, -1, 'text'],
      ],
    );
    // Bypass the driver's parsers to see the wire values, with the headers it always sends.
    const res = await fetch(origin.url, {
      method: 'POST',
      headers: {
        'Neon-Connection-String': origin.app_connection_string,
        'Neon-Raw-Text-Output': 'true',
        'Neon-Array-Mode': 'true',
        ...authHeaders(),
      },
      body: JSON.stringify({
        query: `SELECT 42::int4, 1.50::numeric, true, '{"a":1}'::jsonb, '\\x01ff'::bytea,
                '2024-01-02 03:04:05.678+00'::timestamptz, '{1,NULL}'::int[], NULL::text`,
        params: [],
      }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), null, 'the proxy sends no CORS');
    const body = await res.json();
    assert.equal(body.rowAsArray, true);
    assert.deepEqual(body.rows, [
      ['42', '1.50', 't', '{"a": 1}', '\\x01ff', '2024-01-02 03:04:05.678+00', '{1,NULL}', null],
    ]);
    // Without them, as Neon's proxy: values typed by their columns, rows as objects.
    const typed = await fetch(origin.url, {
      method: 'POST',
      headers: { 'Neon-Connection-String': origin.app_connection_string, ...authHeaders() },
      body: JSON.stringify({
        query: `SELECT 42::int4 AS i, 1.50::numeric AS n, true AS t, '{"a":1}'::jsonb AS j,
                '{1,NULL}'::int[] AS a, 9007199254740993::int8 AS l, NULL::text AS z`,
        params: [],
      }),
    });
    assert.equal(typed.status, 200);
    const tb = await typed.json();
    assert.equal(tb.rowAsArray, false);
    assert.deepEqual(tb.rows, [
      { i: 42, n: '1.50', t: true, j: { a: 1 }, a: [1, null], l: '9007199254740993', z: null },
    ]);
  });

  test('parameters of every common type round-trip', async () => {
    const when = new Date(Date.UTC(2024, 5, 7, 8, 9, 10, 123));
    const bin = Buffer.from([0, 1, 254, 255]);
    const [row] = await app.query(
      `SELECT $1::int2 AS i2, $2::int4 AS i4, $3::int8 AS i8, $4::numeric AS num,
              $5::float4 AS f4, $6::float8 AS f8, $7::bool AS yes, $8::text AS txt,
              $9::varchar AS vc, $10::uuid AS id, $11::json AS js, $12::jsonb AS jb,
              $13::timestamptz AS tstz, $14::date AS d, $15::bytea AS bin,
              $16::int[] AS ints, $17::text[] AS texts, $18::text AS nothing,
              $19::timestamp AS ts, $20 AS untyped`,
      [
        7, 42, '9007199254740993', '1.50', 1.5, 0.1, true, 'it\'s "q" \\ x', 'vc',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', { a: [1, 2] }, { b: { c: 'd' } },
        when, '2024-01-02', bin, [1, 2, null], ['a"b', 'c\\d', null, 'x,y', 'NULL'], null,
        '2024-01-02 03:04:05', 'plain',
      ],
    );
    assert.equal(row.i2, 7);
    assert.equal(row.i4, 42);
    assert.equal(row.i8, '9007199254740993');
    assert.equal(row.num, '1.50');
    assert.equal(row.f4, 1.5);
    assert.equal(row.f8, 0.1);
    assert.equal(row.yes, true);
    assert.equal(row.txt, 'it\'s "q" \\ x');
    assert.equal(row.vc, 'vc');
    assert.equal(row.id, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    assert.deepEqual(row.js, { a: [1, 2] });
    assert.deepEqual(row.jb, { b: { c: 'd' } });
    assert.equal(row.tstz.getTime(), when.getTime());
    assert.equal(row.d.getTime(), new Date(2024, 0, 2).getTime());
    assert.deepEqual([...row.bin], [0, 1, 254, 255]);
    assert.deepEqual(row.ints, [1, 2, null]);
    assert.deepEqual(row.texts, ['a"b', 'c\\d', null, 'x,y', 'NULL']);
    assert.equal(row.nothing, null);
    assert.equal(row.ts.getTime(), new Date(2024, 0, 2, 3, 4, 5).getTime());
    assert.equal(row.untyped, 'plain');

    // Tagged templates: Buffers become $n::bytea, everything else an inferred parameter.
    const [t] = await app`SELECT ${bin} AS b, ${41}::int + 1 AS n, ${'x'} || 'y' AS s`;
    assert.deepEqual([...t.b], [0, 1, 254, 255]);
    assert.equal(t.n, 42);
    assert.equal(t.s, 'xy');
  });

  describe('batch transactions', () => {
    const table = `origin_probe_${run}`;
    before(async () => {
      await su.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text NOT NULL)`);
    });
    after(async () => {
      await su.query(`DROP TABLE IF EXISTS ${table}`);
    });

    test('a batch commits as a whole', async () => {
      const results = await su.transaction([
        su.query(`INSERT INTO ${table} (id, v) VALUES ($1, $2)`, [1, 'one']),
        su.query(`INSERT INTO ${table} (id, v) VALUES ($1, $2)`, [2, 'two']),
        su.query(`SELECT count(*)::int AS n FROM ${table}`),
      ]);
      assert.equal(results.length, 3);
      assert.deepEqual(results[2], [{ n: 2 }]);
      const [{ n }] = await su.query(`SELECT count(*)::int AS n FROM ${table}`);
      assert.equal(n, 2);
    });

    test('a failing query rolls the whole batch back and only its error is returned', async () => {
      const err = await dbError(() =>
        su.transaction([
          su.query(`INSERT INTO ${table} (id, v) VALUES ($1, $2)`, [3, 'three']),
          su.query(`INSERT INTO ${table} (id, v) VALUES ($1, $2)`, [1, 'duplicate']),
          su.query(`INSERT INTO ${table} (id, v) VALUES ($1, $2)`, [4, 'four']),
        ]),
      );
      assert.equal(err.code, '23505');
      assert.equal(err.constraint, `${table}_pkey`);
      assert.equal(err.table, table);
      const rows = await su.query(`SELECT id FROM ${table} ORDER BY id`);
      assert.deepEqual(rows.map((r) => r.id), [1, 2]);
    });

    test('isolation level and read-only options reach Postgres', async () => {
      const [iso, ro] = await su.transaction(
        [su`SHOW transaction_isolation`, su`SHOW transaction_read_only`],
        { isolationLevel: 'Serializable', readOnly: true },
      );
      assert.equal(iso[0].transaction_isolation, 'serializable');
      assert.equal(ro[0].transaction_read_only, 'on');
      const err = await dbError(() =>
        su.transaction([su.query(`INSERT INTO ${table} (id, v) VALUES (9, 'x')`)], { readOnly: true }),
      );
      assert.equal(err.code, '25006');
    });

    test('the batch headers are echoed and an unknown isolation level is a 400', async () => {
      const post = (level) =>
        fetch(origin.url, {
          method: 'POST',
          headers: {
            'Neon-Connection-String': origin.app_connection_string,
            'Neon-Batch-Isolation-Level': level,
            'Neon-Batch-Read-Only': 'yes',
            'Neon-Array-Mode': 'true',
            ...authHeaders(),
          },
          body: JSON.stringify({ queries: [{ query: 'SHOW transaction_read_only', params: [] }] }),
        });
      const ok = await post('RepeatableRead');
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get('neon-batch-isolation-level'), 'RepeatableRead');
      assert.equal(ok.headers.get('neon-batch-read-only'), 'false');
      const body = await ok.json();
      assert.deepEqual(body.results[0].rows, [['off']], 'only exactly "true" is true');
      const bad = await post('Chaos');
      assert.equal(bad.status, 400);
      assert.equal((await bad.json()).code, '');
    });
  });

  test('an SQL error surfaces as NeonDbError with every field', async () => {
    const err = await dbError(() => app.query('SELECT * FROM nope_does_not_exist'));
    assert.equal(err.code, '42P01');
    assert.equal(err.position, '15');
    assert.equal(err.severity, 'ERROR');
    assert.match(err.message, /relation "nope_does_not_exist" does not exist/);
    assert.equal(err.routine, 'parserOpenTable');
    assert.equal(typeof err.line, 'string');
  });

  test('session state never leaks into the next request on a reused connection', async () => {
    let reused = 0;
    for (let i = 0; i < 6; i++) {
      const [a] = await app.query(
        `SELECT pg_backend_pid() AS pid, set_config('edgefront.probe', $1, false) AS v,
                set_config('statement_timeout', '123456', false) AS st`,
        [`leak-${i}`],
      );
      assert.equal(a.v, `leak-${i}`);
      await app.query('CREATE TEMP TABLE IF NOT EXISTS leak_probe (x int)');
      // The pool resets a returned connection in the background; let it finish.
      await new Promise((r) => setTimeout(r, 100));
      const [b] = await app.query(
        `SELECT pg_backend_pid() AS pid, current_setting('edgefront.probe', true) AS v,
                current_setting('statement_timeout') AS st,
                to_regclass('pg_temp.leak_probe') IS NULL AS no_temp`,
      );
      assert.ok(b.v === null || b.v === '', `setting leaked: ${b.v}`);
      assert.notEqual(b.st, '123456ms');
      assert.equal(b.no_temp, true);
      if (a.pid === b.pid) reused++;
    }
    assert.ok(reused > 0, 'expected the pool to reuse a connection at least once');
  });

  describe('tenancy migration: row-level security for edgefront_app', () => {
    const slugA = `t-${run.replace(/_/g, '-')}-a`;
    const slugB = `t-${run.replace(/_/g, '-')}-b`;
    const hostA = `${slugA}.example.test`;
    const hostB = `${slugB}.example.test`;
    const items = `rls_probe_${run}`;
    let idA;
    let idB;

    before(async () => {
      [{ id: idA }] = await su.query(
        `INSERT INTO tenants (slug, name, tier) VALUES ($1, 'Tenant A', 'premium') RETURNING id`,
        [slugA],
      );
      [{ id: idB }] = await su.query(
        `INSERT INTO tenants (slug, name) VALUES ($1, 'Tenant B') RETURNING id`,
        [slugB],
      );
      await su.transaction([
        su.query('INSERT INTO tenant_domains (hostname, tenant_id, verified_at) VALUES ($1, $2, now())', [hostA, idA]),
        su.query('INSERT INTO tenant_domains (hostname, tenant_id) VALUES ($1, $2)', [hostB, idB]),
        // A tenant table the app may write, set up by the migration's convention.
        su.query(`CREATE TABLE ${items} (id serial PRIMARY KEY, tenant_id uuid NOT NULL, note text)`),
        su.query(`ALTER TABLE ${items} ENABLE ROW LEVEL SECURITY`),
        su.query(`ALTER TABLE ${items} FORCE ROW LEVEL SECURITY`),
        su.query(`CREATE POLICY tenant_isolation ON ${items}
          USING (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)
          WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid)`),
        su.query(`GRANT SELECT, INSERT ON ${items} TO edgefront_app`),
        su.query(`GRANT USAGE ON SEQUENCE ${items}_id_seq TO edgefront_app`),
      ]);
    });

    after(async () => {
      await su.query(`DROP TABLE IF EXISTS ${items}`);
      await su.query('DELETE FROM tenants WHERE slug = ANY($1)', [[slugA, slugB]]);
    });

    test('the app role is not privileged', async () => {
      const [r] = await su.query(
        `SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolcanlogin
         FROM pg_roles WHERE rolname = 'edgefront_app'`,
      );
      assert.deepEqual(r, {
        rolsuper: false, rolbypassrls: false, rolcreatedb: false, rolcreaterole: false, rolcanlogin: true,
      });
      const [{ n }] = await su.query('SELECT count(*)::int AS n FROM tenants WHERE slug = ANY($1)', [[slugA, slugB]]);
      assert.equal(n, 2, 'the superuser sees both tenants');
    });

    test('without app.current_tenant the app sees no tenant and no domain', async () => {
      const [{ n }] = await app`SELECT count(*)::int AS n FROM tenants`;
      assert.equal(n, 0);
      const [{ d }] = await app`SELECT count(*)::int AS d FROM tenant_domains`;
      assert.equal(d, 0);
    });

    test('a batch starting with set_config sees exactly that tenant', async () => {
      const [, tenants, domains] = await app.transaction([
        app`SELECT set_config('app.current_tenant', ${idA}, true)`,
        app`SELECT id, slug, tier FROM tenants`,
        app`SELECT hostname, tenant_id FROM tenant_domains`,
      ]);
      assert.deepEqual(tenants, [{ id: idA, slug: slugA, tier: 'premium' }]);
      assert.deepEqual(domains, [{ hostname: hostA, tenant_id: idA }]);
      // The setting was transaction-local: the next request is back to nothing.
      const [{ n }] = await app`SELECT count(*)::int AS n FROM tenants`;
      assert.equal(n, 0);
    });

    test('cross-tenant writes fail with 42501', async () => {
      // tenant_domains is read-only for the app...
      const denied = await dbError(() =>
        app.transaction([
          app`SELECT set_config('app.current_tenant', ${idA}, true)`,
          app`INSERT INTO tenant_domains (hostname, tenant_id) VALUES (${`x.${hostB}`}, ${idB})`,
        ]),
      );
      assert.equal(denied.code, '42501');
      // ...and on a table the app may write, the policy's WITH CHECK stops other tenants' rows.
      const rls = await dbError(() =>
        app.transaction([
          app`SELECT set_config('app.current_tenant', ${idA}, true)`,
          app.query(`INSERT INTO ${items} (tenant_id, note) VALUES ($1, 'sneaky')`, [idB]),
        ]),
      );
      assert.equal(rls.code, '42501');
      assert.match(rls.message, /row-level security/);
      const [, inserted] = await app.transaction([
        app`SELECT set_config('app.current_tenant', ${idA}, true)`,
        app.query(`INSERT INTO ${items} (tenant_id, note) VALUES ($1, 'mine') RETURNING note`, [idA]),
      ]);
      assert.deepEqual(inserted, [{ note: 'mine' }]);
      const [, seenByB] = await app.transaction([
        app`SELECT set_config('app.current_tenant', ${idB}, true)`,
        app.query(`SELECT count(*)::int AS n FROM ${items}`),
      ]);
      assert.deepEqual(seenByB, [{ n: 0 }]);
      const [{ n }] = await su.query(`SELECT count(*)::int AS n FROM ${items}`);
      assert.equal(n, 1, 'only the legitimate row was written');
      const write = await dbError(() => app`INSERT INTO tenants (slug, name) VALUES ('nope', 'x')`);
      assert.equal(write.code, '42501');
    });

    test('the SECURITY DEFINER resolvers find a tenant by slug or domain', async () => {
      const bySlug = await app`SELECT * FROM resolve_tenant_by_slug(${slugB.toUpperCase()})`;
      assert.equal(bySlug.length, 1);
      assert.equal(bySlug[0].id, idB);
      assert.equal(bySlug[0].tier, 'basic');
      assert.equal(bySlug[0].status, 'active');
      assert.deepEqual(bySlug[0].settings, {});
      const byDomain = await app`SELECT id, slug FROM resolve_tenant_by_domain(${hostA})`;
      assert.deepEqual(byDomain, [{ id: idA, slug: slugA }]);
      assert.deepEqual(await app`SELECT * FROM resolve_tenant_by_domain('unknown.example.test')`, []);
    });
  });

  test('a wrong password is rejected by Postgres', async () => {
    const url = new URL(origin.app_connection_string);
    url.password = `wrong-${run}`;
    const bad = neon(url.toString(), opts);
    const err = await dbError(() => bad`SELECT 1`);
    assert.equal(err.code, '28P01');
  });

  test('a statement over the timeout is cancelled with 57014', async () => {
    const err = await dbError(() => app`SELECT pg_sleep(3)`);
    assert.equal(err.code, '57014');
    const [{ ok }] = await app`SELECT 1 AS ok`;
    assert.equal(ok, 1);
  });

  test('HTTP edges: 404, 405, missing connection string, oversized request', async () => {
    const base = new URL(origin.url);
    const other = await fetch(new URL('/nope', base), { method: 'POST', body: '{}' });
    assert.equal(other.status, 404);
    assert.equal(other.headers.get('access-control-allow-origin'), null);
    const get = await fetch(origin.url);
    assert.equal(get.status, 405);
    const noConn = await fetch(origin.url, {
      method: 'POST',
      headers: authHeaders(),
      body: JSON.stringify({ query: 'SELECT 1', params: [] }),
    });
    assert.equal(noConn.status, 400);
    assert.equal((await noConn.json()).code, '');
    const limit = origin.max_request_bytes ?? 1048576;
    const huge = await fetch(origin.url, {
      method: 'POST',
      headers: { 'Neon-Connection-String': origin.app_connection_string, ...authHeaders() },
      body: JSON.stringify({ query: `SELECT '${'x'.repeat(limit)}'`, params: [] }),
    });
    assert.equal(huge.status, 413);
  });
});
