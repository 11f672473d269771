import { Container, getContainer, getRandom, switchPort } from "cloudflare:workers";
import { define } from "./app.js";

const { Echo, Broken, handler } = define({ Container, getContainer, getRandom, switchPort });
export { Echo, Broken };
export default handler;
