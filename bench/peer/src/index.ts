// The TypeScript worker a team would write instead of edgefront, for `cargo xtask bench --peer`:
// Hono for routing, jose for Cognito-shaped JWTs, aws4fetch for presigned S3 URLs and the Neon
// driver for SQL through the same proxy edgefront uses. Written the way that community writes
// it, not handicapped: every cache (JWKS, tenants, the S3 signer with its derived keys, the SQL
// client) lives at module level and outlives the request.
import { Hono, type Context } from 'hono';
import { createRemoteJWKSet, jwtVerify, errors, type JWTPayload } from 'jose';
import { AwsClient } from 'aws4fetch';
import { neon, neonConfig, type NeonQueryFunction } from '@neondatabase/serverless';

type Env = {
  JWKS_URL: string;
  ISSUER: string;
  CLIENT_ID: string;
  BASE_DOMAIN: string;
  ORIGIN_SQL_URL: string;
  DATABASE_URL: string;
  S3_ENDPOINT: string;
  S3_REGION: string;
  S3_BUCKET: string;
  S3_ACCESS_KEY_ID: string;
  S3_SECRET_ACCESS_KEY: string;
};

type Tenant = { id: string; slug: string; name: string; tier: string; status: string };

// ---- module-level state (one per isolate) -------------------------------------------------
let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
let aws: AwsClient | undefined;
let sql: NeonQueryFunction<false, false> | undefined;
const TENANT_TTL_MS = 60_000;
const tenants = new Map<string, { tenant: Tenant | null; until: number }>();

function keys(env: Env) {
  // jose caches the key set, refetches on an unknown kid (with a cooldown) and after max age.
  return (jwks ??= createRemoteJWKSet(new URL(env.JWKS_URL)));
}

function signer(env: Env) {
  // aws4fetch caches the derived signing key per secret, day, region and service.
  return (aws ??= new AwsClient({
    accessKeyId: env.S3_ACCESS_KEY_ID,
    secretAccessKey: env.S3_SECRET_ACCESS_KEY,
    service: 's3',
    region: env.S3_REGION,
  }));
}

function db(env: Env) {
  if (!sql) {
    neonConfig.fetchEndpoint = env.ORIGIN_SQL_URL;
    sql = neon(env.DATABASE_URL);
  }
  return sql;
}

class HttpError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 422,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

// ---- tenant from the Host subdomain, cached ------------------------------------------------
async function tenantOf(c: Context<{ Bindings: Env }>): Promise<Tenant> {
  const host = (c.req.header('host') ?? '').toLowerCase().replace(/:\d+$/, '');
  const suffix = `.${c.env.BASE_DOMAIN}`;
  const slug = host.endsWith(suffix) ? host.slice(0, -suffix.length) : '';
  if (!/^[a-z0-9-]{1,63}$/.test(slug)) throw new HttpError(404, 'unknown_tenant', 'No such tenant.');
  const now = Date.now();
  let hit = tenants.get(slug);
  if (!hit || hit.until < now) {
    const rows = await db(c.env).query(
      'SELECT id, slug, name, tier, status FROM resolve_tenant_by_slug($1)',
      [slug],
    );
    hit = { tenant: (rows[0] as Tenant | undefined) ?? null, until: now + TENANT_TTL_MS };
    tenants.set(slug, hit);
  }
  if (!hit.tenant) throw new HttpError(404, 'unknown_tenant', 'No such tenant.');
  if (hit.tenant.status !== 'active') throw new HttpError(403, 'tenant_suspended', 'This tenant is not active.');
  return hit.tenant;
}

// ---- Cognito ID and access tokens ----------------------------------------------------------
async function principal(c: Context<{ Bindings: Env }>): Promise<JWTPayload> {
  const auth = c.req.header('authorization') ?? '';
  const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
  if (!token) throw new HttpError(401, 'missing_token', 'A bearer token is required.');
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, keys(c.env), {
      issuer: c.env.ISSUER,
      algorithms: ['RS256', 'ES256', 'EdDSA'],
      clockTolerance: 60,
      requiredClaims: ['sub', 'exp', 'token_use'],
    }));
  } catch (e) {
    const expired = e instanceof errors.JWTExpired;
    throw new HttpError(401, expired ? 'token_expired' : 'invalid_token', 'The token is not valid.');
  }
  // Cognito: ID tokens name the app client in `aud`, access tokens in `client_id` (no `aud`).
  const use = payload.token_use;
  const client = use === 'id' ? payload.aud : use === 'access' ? payload.client_id : undefined;
  if (client !== c.env.CLIENT_ID) throw new HttpError(401, 'invalid_token', 'The token is not for this client.');
  return payload;
}

// ---- routes --------------------------------------------------------------------------------
const app = new Hono<{ Bindings: Env }>();

app.get('/healthz', (c) => c.json({ status: 'ok' }));

app.get('/v1/me', async (c) => {
  const tenant = await tenantOf(c);
  const p = await principal(c);
  c.header('cache-control', 'private, no-store');
  return c.json({
    subject: p.sub,
    email: p.email ?? null,
    email_verified: p.email_verified === true || p.email_verified === 'true',
    name: p.name ?? p['cognito:username'] ?? null,
    tenant: { id: tenant.id, slug: tenant.slug, name: tenant.name, tier: tenant.tier },
    roles: p['cognito:groups'] ?? [],
    issuer: p.iss,
    token_use: p.token_use,
    token_expires_at: p.exp,
  });
});

const CONTENT_TYPES = new Set(['image/png', 'image/jpeg', 'image/webp', 'image/gif', 'image/avif', 'application/pdf']);
const UPLOAD_TTL = 900;

app.post('/v1/uploads', async (c) => {
  const tenant = await tenantOf(c);
  const p = await principal(c);
  let body: { filename?: unknown; content_type?: unknown; size?: unknown };
  try {
    body = await c.req.json();
  } catch {
    throw new HttpError(400, 'invalid_json', 'The body is not JSON.');
  }
  const { filename, content_type, size } = body ?? {};
  if (typeof filename !== 'string' || !filename || filename.length > 1024)
    throw new HttpError(400, 'invalid_field', 'filename must name a file.');
  if (typeof content_type !== 'string' || !CONTENT_TYPES.has(content_type.toLowerCase()))
    throw new HttpError(422, 'content_type_not_allowed', 'This content type is not accepted.');
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > 50 * 1024 * 1024)
    throw new HttpError(422, 'file_too_large', 'size must be between 1 byte and 50 MiB.');
  const id = crypto.randomUUID();
  const safe = (filename.split(/[\\/]/).pop() ?? 'file').replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100);
  const key = `${tenant.id}/staging/${id}/${safe}`;
  const url = new URL(`${c.env.S3_ENDPOINT.replace(/\/$/, '')}/${c.env.S3_BUCKET}/${key}`);
  url.searchParams.set('X-Amz-Expires', String(UPLOAD_TTL));
  const headers = { 'content-type': content_type.toLowerCase(), 'content-length': String(size) };
  // The content type and length are signed (allHeaders): S3 refuses any other.
  const signed = await signer(c.env).sign(url.toString(), {
    method: 'PUT',
    headers,
    aws: { signQuery: true, allHeaders: true },
  });
  c.header('cache-control', 'private, no-store');
  c.header('location', `/v1/files/${id}`);
  return c.json(
    {
      file: { id, filename, content_type: headers['content-type'], declared_size: size, status: 'pending', uploaded_by: p.sub },
      upload: {
        expires_at: new Date(Date.now() + UPLOAD_TTL * 1000).toISOString(),
        max_size: size,
        put: { method: 'PUT', url: signed.url, headers },
      },
    },
    201,
  );
});

// The storefront list through the same SQL proxy: one batch (a transaction) that sets the
// tenant for row-level security and reads a page.
app.get('/v1/storefront/catalog', async (c) => {
  const tenant = await tenantOf(c);
  const limit = Math.min(Math.max(Number(c.req.query('limit') ?? 20) || 20, 1), 100);
  const q = db(c.env);
  const [, rows] = await q.transaction([
    q`SELECT set_config('app.current_tenant', ${tenant.id}, true)`,
    q`SELECT jsonb_build_object('id', i.id, 'sku', i.sku, 'name', i.name, 'description', i.description,
           'price', i.price::text, 'currency', i.currency, 'category', i.category,
           'in_stock', i.inventory > 0, 'updated_at', i.updated_at) AS doc
      FROM public.catalog_items i WHERE i.status = 'active'
      ORDER BY i.created_at DESC, i.id DESC LIMIT ${limit + 1}`,
  ]);
  const docs = (rows as { doc: unknown }[]).map((r) => r.doc);
  c.header('cache-control', 'public, max-age=60');
  return c.json({ items: docs.slice(0, limit), next_cursor: docs.length > limit ? 'more' : null });
});

app.notFound((c) => c.json({ code: 'not_found', title: 'Not Found' }, 404));
app.onError((e, c) => {
  if (e instanceof HttpError) {
    return c.json({ code: e.code, detail: e.message }, e.status, { 'content-type': 'application/problem+json' });
  }
  console.error(e);
  return c.json({ code: 'internal', detail: 'Internal error.' }, 500, { 'content-type': 'application/problem+json' });
});

export default app;
