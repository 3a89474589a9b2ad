// A request's head in one string, for one crossing into wasm: its method, its URL, then a
// `name,value` line for each of the `wanted` header names the request has. `Headers.get`
// joins a repeated header's values as iterating `Headers` does. A method is a token, a
// WHATWG-serialized URL holds no line break, and neither does a header value.
// Used by edge/worker and by bench/floor's replay, which reads a request as edge/worker does.
export function request_head(request, wanted) {
  const headers = request.headers;
  let head = request.method + "\n" + request.url;
  for (let i = 0; i < wanted.length; i++) {
    const value = headers.get(wanted[i]);
    if (value !== null) head += "\n" + wanted[i] + "," + value;
  }
  return head;
}

const utf8 = new TextEncoder();

// The same head, written as UTF-8 straight into `buf` (a view of wasm memory) by one
// `encodeInto`: wasm-bindgen would return a string by copying it a UTF-16 unit at a time in
// JS, and an authenticated request's head holds a 1 KB token. Returns the bytes written or,
// when the head does not fit, minus the bytes it needs at most.
export function request_head_into(request, wanted, buf) {
  const head = request_head(request, wanted);
  const { read, written } = utf8.encodeInto(head, buf);
  return read === head.length ? written : -3 * head.length;
}
