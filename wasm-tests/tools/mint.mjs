// Mints Cognito-shaped tokens for the dev issuers with `jose`. Used by the black-box suite and by
// `cargo xtask token --tenant demo --role admin [--ttl 1h] [--alg ES256] [--platform-admin]
// [--email a@b.test] [--sub …]`. The dev stack runs membership mode: a token's groups and tenant
// claim grant nothing, the database does. Without --email/--sub the CLI mints for the seeded user
// of that tenant and role (the stack description's `users`).
import { SignJWT, importJWK } from 'jose';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';

/** Signs `claims` with the issuer's private key for `alg` (or a given private JWK). */
export async function sign(stack, issuerName, claims, { alg = 'RS256', jwk, header = {} } = {}) {
  const issuer = stack.auth.issuers[issuerName];
  const key =
    jwk ?? JSON.parse(readFileSync(issuer.private_jwks, 'utf8')).keys.find((k) => k.alg === alg);
  if (!key) throw new Error(`issuer ${issuerName} has no ${alg} key`);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header })
    .sign(await importJWK(key, key.alg));
}

/**
 * Claims of a Cognito ID token (or access token with `tokenUse: 'access'`). ID tokens carry the
 * user's `email` (`email_verified: true` unless `emailVerified: false`) and `name`; `sub` defaults
 * to a fresh uuid and `email` to `<sub>@users.test`. `extra` overrides any claim.
 */
export function cognitoClaims(
  stack,
  issuerName,
  { tenant, role = 'member', ttl = 3600, tokenUse = 'id', extra = {}, sub, email, name, emailVerified = true } = {},
) {
  const issuer = stack.auth.issuers[issuerName];
  const now = Math.floor(Date.now() / 1000);
  const t = tenant && stack.tenants.find((x) => x.slug === tenant);
  if (tenant && !t) throw new Error(`no tenant ${tenant} in the stack`);
  const subject = sub ?? randomUUID();
  const base = {
    iss: issuer.issuer,
    sub: subject,
    token_use: tokenUse,
    'cognito:groups': role ? [role] : [],
    iat: now,
    auth_time: now,
    exp: now + ttl,
    jti: randomUUID(),
    ...(t ? { 'custom:tenant_id': t.id, 'custom:tenant_tier': t.tier } : {}),
  };
  const username = (email ?? subject).split('@')[0];
  if (tokenUse === 'id') {
    Object.assign(base, {
      aud: issuer.client_id,
      email: email ?? `${subject}@users.test`,
      email_verified: emailVerified,
      name: name ?? `User ${username.slice(0, 8)}`,
      'cognito:username': username,
    });
  } else Object.assign(base, { client_id: issuer.client_id, scope: 'openid', username });
  return { ...base, ...extra };
}

function parseTtl(s) {
  const m = /^(\d+)([smhd]?)$/.exec(s ?? '3600');
  if (!m) throw new Error(`bad --ttl ${s} (e.g. 900, 15m, 1h, 1d)`);
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const opt = (name) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const stack = JSON.parse(readFileSync(opt('stack'), 'utf8'));
  const platform = args.includes('--platform-admin');
  const issuer = platform ? 'platform' : 'tenants';
  const tenant = platform ? undefined : opt('tenant') ?? 'demo';
  const role = platform ? 'platform-admin' : opt('role') ?? 'member';
  let who = { sub: opt('sub'), email: opt('email') };
  if (platform) {
    who = { sub: who.sub, email: who.email ?? 'platform-admin@edgefront.test', name: 'Platform Admin' };
  } else if (!who.sub && !who.email) {
    // The seeded user of that tenant and role: the only kind of token that works out of the box.
    const u = (stack.users ?? []).find((x) => x.tenant === tenant && x.role === role);
    if (!u) {
      const seeded = (stack.users ?? []).map((x) => `${x.tenant}/${x.role}`).join(', ');
      console.error(`no seeded ${role} of ${tenant} (seeded: ${seeded}); pass --email and/or --sub for an ad-hoc user`);
      process.exit(2);
    }
    who = { sub: u.subject, email: u.email, name: u.name };
  }
  const claims = cognitoClaims(stack, issuer, {
    tenant,
    role,
    ttl: parseTtl(opt('ttl')),
    tokenUse: opt('token-use') ?? 'id',
    ...who,
  });
  console.log(await sign(stack, issuer, claims, { alg: opt('alg') ?? 'RS256' }));
}
