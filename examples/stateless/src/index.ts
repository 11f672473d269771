import { Container, getContainer, getRandom } from "cloudflare:workers";

interface Env {
  BACKEND: DurableObjectNamespace<Backend>;
}

// How many containers share the load: getRandom picks one of
// "instance-0" … "instance-2" per request.
const INSTANCES = 3;

export class Backend extends Container<Env> {
  defaultPort = 8080;
  sleepAfter = "2m";
  enableInternet = false;
}

// Routes:
//   /instance/<name>/…   the container named <name>
//   anything else        one of INSTANCES containers, picked at random
export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const pinned = url.pathname.match(/^\/instance\/([^/]+)(\/.*)?$/);
    if (pinned) {
      return getContainer(env.BACKEND, decodeURIComponent(pinned[1])).fetch(request);
    }
    const backend = await getRandom(env.BACKEND, INSTANCES);
    return backend.fetch(request);
  },
};
