// The Worker's `main` (wrangler.toml): worker-build's bundle, with its fetch handler served
// without the shim's per-request proxies (src/entry.js says why). Durable Object classes and
// the rest of the bundle's exports are re-exported as built.
import Shim from "./build/index.js";
import { entry } from "./src/entry.js";

export * from "./build/index.js";
export default entry(Shim);
