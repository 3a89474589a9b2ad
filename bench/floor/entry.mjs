// bench/floor's `main`: served exactly as edge/worker serves its bundle (edge/worker/entry.mjs).
import Shim from "./build/index.js";
import { entry } from "../../edge/worker/src/entry.js";

export * from "./build/index.js";
export default entry(Shim);
