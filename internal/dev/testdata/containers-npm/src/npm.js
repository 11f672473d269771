import * as containers from "@cloudflare/containers";
import { define } from "./app.js";

const { Echo, Broken, handler } = define(containers);
export { Echo, Broken };
export default handler;
