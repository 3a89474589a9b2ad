// One fetch and nothing else: POSTs the batch it was given (SQL_BODY, with SQL_HEADERS) to the
// SQL proxy (SQL_URL) and streams the proxy's answer back. What any Worker pays around a batch
// it sends: `cargo xtask bench --peer` compares the storefront route with it and with the bare
// batch (wrk straight to the proxy).
export default {
  async fetch(request, env) {
    const answer = await fetch(env.SQL_URL, {
      method: 'POST',
      headers: JSON.parse(env.SQL_HEADERS),
      body: env.SQL_BODY,
    });
    return new Response(answer.body, {
      status: answer.status,
      headers: { 'content-type': 'application/json' },
    });
  },
};
