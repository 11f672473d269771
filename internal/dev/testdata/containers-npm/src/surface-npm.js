import * as containers from "@cloudflare/containers";
import { define } from "./surface-app.js";

const { Surface, Sleepy, handler } = define(containers);
export { Surface, Sleepy };
export default handler;
