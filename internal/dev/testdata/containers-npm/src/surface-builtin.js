import { Container, getContainer } from "cloudflare:workers";
import { define } from "./surface-app.js";

const { Surface, Sleepy, handler } = define({ Container, getContainer });
export { Surface, Sleepy };
export default handler;
