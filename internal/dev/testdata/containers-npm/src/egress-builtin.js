import { Container, ContainerProxy, getContainer } from "cloudflare:workers";
import { define } from "./egress-app.js";

const { Egress, handler } = define({ Container, getContainer });
export { Egress, ContainerProxy };
export default handler;
