// An outbound request whose whole answer core wants (a SQL batch, an S3 call, a key set), in
// one crossing out of wasm and one promise back: `fetch`, then the answer's `arrayBuffer()`,
// then its head as one string, all here. Rust awaiting each of those promises in turn costs a
// wasm closure pair, a microtask and a crossing per promise, and reading the head takes more
// crossings. `headers` is the JSON record core writes (`reply::headers_json`); `body` is a view
// of wasm memory, good only for this call, so it is copied before anything is awaited.
// `ms` > 0 is the deadline: the runtime's `AbortSignal.timeout` ends the call, body included,
// instead of a timer that wasm sets and clears on every call. It rejects with a
// `TimeoutError` then.
//
// Resolves to `{ head, body }`: `head` is the status, then a `name,value` line per header
// (iterating `Headers` joins a repeated one; a value never holds a line break), and `body`
// the answer's bytes.
export async function fetch_whole(url, method, headers, body, ms) {
  const init = { method, headers: JSON.parse(headers) };
  if (body.length > 0) init.body = body.slice();
  if (ms > 0) init.signal = AbortSignal.timeout(ms);
  const response = await fetch(url, init);
  const bytes = new Uint8Array(await response.arrayBuffer());
  let head = String(response.status);
  for (const [name, value] of response.headers) head += "\n" + name + "," + value;
  return { head, body: bytes };
}
