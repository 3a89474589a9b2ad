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
      { hostname: url.hostname, port: url.port, path: url.pathname + url.search, method, headers: h, timeout: 15_000 },
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
