// Generates the dev issuers' signing keys with `jose`: one private JWK set per issuer (kept next
// to the run) and the public JWKS the JWKS server publishes. Usage: node devkeys.mjs <dir> <name:algs>...
//   e.g. node devkeys.mjs .edgefront/run/jwks tenants:RS256,ES256,EdDSA platform:RS256 rotation-workers:
import { generateKeyPair, exportJWK, calculateJwkThumbprint } from 'jose';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export async function makeKey(alg) {
  const opts = alg === 'EdDSA' ? { crv: 'Ed25519', extractable: true } : { extractable: true };
  const { publicKey, privateKey } = await generateKeyPair(alg, opts);
  const pub = await exportJWK(publicKey);
  const kid = `${alg.toLowerCase()}-${(await calculateJwkThumbprint(pub)).slice(0, 16)}`;
  return {
    public: { ...pub, kid, alg, use: 'sig' },
    private: { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [dir, ...specs] = process.argv.slice(2);
  mkdirSync(dir, { recursive: true });
  for (const spec of specs) {
    const [name, algs = ''] = spec.split(':');
    const keys = [];
    for (const alg of algs.split(',').filter(Boolean)) keys.push(await makeKey(alg));
    writeFileSync(join(dir, `${name}.json`), JSON.stringify({ keys: keys.map((k) => k.public) }, null, 2));
    writeFileSync(join(dir, `${name}.private.json`), JSON.stringify({ keys: keys.map((k) => k.private) }, null, 2), { mode: 0o600 });
  }
}
