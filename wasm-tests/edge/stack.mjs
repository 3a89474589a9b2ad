// Shared by every black-box test: which runtime we are testing and the stack it runs on.
// `cargo xtask test` sets EDGEFRONT_STACK (the stack description), EDGEFRONT_RUNTIME and
// EDGEFRONT_BASE_URL; the same files run unchanged against Workers and Spin.
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the suite with \`cargo xtask test\``);
  return v;
}

export const stack = JSON.parse(readFileSync(required('EDGEFRONT_STACK'), 'utf8'));
export const runtime = required('EDGEFRONT_RUNTIME');
export const baseUrl = required('EDGEFRONT_BASE_URL');

/** fetch against the edge, as if the browser were on `{tenant}.localhost`. */
export async function edge(path, { tenant, host, ...init } = {}) {
  const headers = new Headers(init.headers ?? {});
  const port = new URL(baseUrl).port;
  if (host) headers.set('host', host);
  else if (tenant) headers.set('host', `${tenant}.${stack.base_domain}:${port}`);
  return fetch(new URL(path, baseUrl), { ...init, headers, signal: AbortSignal.timeout(15_000) });
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
