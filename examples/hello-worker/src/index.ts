import { Hono } from "hono";

type Bindings = { GREETING: string };

const app = new Hono<{ Bindings: Bindings }>();

app.get("/", (c) => c.text(`${c.env.GREETING} from hono`));

app.get("/users/:id", (c) => {
  const id = Number(c.req.param("id"));
  if (!Number.isInteger(id)) return c.json({ error: "id must be a number" }, 400);
  return c.json({ id, name: `user${id}`, tags: c.req.queries("tag") ?? [] });
});

app.post("/echo", async (c) => {
  const body = await c.req.json<Record<string, unknown>>();
  return c.json({ received: body, type: c.req.header("content-type") }, 201);
});

app.notFound((c) => c.text("no route for " + c.req.path, 404));

app.onError((err, c) => {
  console.error("handler failed", err);
  return c.text("internal error", 500);
});

app.get("/boom", () => {
  throw new Error("boom");
});

export default app;
