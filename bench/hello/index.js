// The floor: the cheapest Worker workerd can run. `cargo xtask bench --peer` subtracts its
// per-request time from every other target's.
export default {
  fetch() {
    return new Response('ok');
  },
};
