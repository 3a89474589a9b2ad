// An answer in one crossing out of wasm: its status, its headers as the JSON record core
// writes (`reply::headers_json`: a record, or pairs when `Set-Cookie` repeats), and its body,
// copied out of wasm memory (`body` is a view of it, good only for this call).
// Used by edge/worker and by bench/floor's replay, which answers as edge/worker does.
export function respond(status, headers, body) {
  return new Response(body.slice(), { status, headers: JSON.parse(headers) });
}
