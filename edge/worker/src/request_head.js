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
