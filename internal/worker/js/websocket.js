// WebSocket, WebSocketPair, MessageEvent, CloseEvent, ErrorEvent.
// Evaluated after fetch.js. See websocket.go for the Go side.
//
// Each WebSocket object sends through a route: to its peer object (both ends
// of a WebSocketPair in this runtime), or to a Go socket id (the end whose
// partner is a real connection). Go delivers frames for a socket id with
// __berth_ws(id, kind, ...) to the object registered in `sockets`.
(function (g) {
  "use strict";
  const B = g.__berth;
  const { host, toU8 } = B;
  const define = (name, value) => Object.defineProperty(g, name, { value, writable: true, configurable: true, enumerable: false });

  class MessageEvent extends Event {
    #data;
    constructor(type, init = {}) { super(type, init); this.#data = init.data; }
    get data() { return this.#data; }
  }
  class CloseEvent extends Event {
    #code; #reason; #wasClean;
    constructor(type, init = {}) {
      super(type, init);
      this.#code = init.code === undefined ? 0 : Number(init.code);
      this.#reason = init.reason === undefined ? "" : String(init.reason);
      this.#wasClean = !!init.wasClean;
    }
    get code() { return this.#code; }
    get reason() { return this.#reason; }
    get wasClean() { return this.#wasClean; }
  }
  class ErrorEvent extends Event {
    #message; #error;
    constructor(type, init = {}) { super(type, init); this.#message = init.message === undefined ? "" : String(init.message); this.#error = init.error; }
    get message() { return this.#message; }
    get error() { return this.#error; }
  }

  const sockets = new Map(); // Go socket id → the WebSocket receiving its frames
  const key = Symbol("WebSocket");
  const CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;

  class WebSocket extends EventTarget {
    #state = OPEN;
    #accepted = false;
    #peer = null;       // the other end of a pair, while both are in JS
    #hostId = 0;        // Go socket this end sends to
    #transferred = false; // handed to Go in a response
    #pending = [];      // events that arrived before accept()
    #tag = "";          // the request that made it, for logs
    #url = null; #protocol = ""; #attachment;
    binaryType = "arraybuffer";

    constructor(url, protocols) {
      super();
      if (url !== key) throw new TypeError("berth: WebSocket client connections are made with fetch(url, { headers: { Upgrade: \"websocket\" } })");
      this.#tag = B.tag;
    }
    static get CONNECTING() { return CONNECTING; }
    static get OPEN() { return OPEN; }
    static get CLOSING() { return CLOSING; }
    static get CLOSED() { return CLOSED; }
    get CONNECTING() { return CONNECTING; }
    get OPEN() { return OPEN; }
    get CLOSING() { return CLOSING; }
    get CLOSED() { return CLOSED; }
    get readyState() { return this.#state; }
    get url() { return this.#url; }
    get protocol() { return this.#protocol; }
    get extensions() { return ""; }

    accept() {
      if (this.#transferred) throw new TypeError("Can't accept() a WebSocket that was already used in a response.");
      if (this.#accepted) return;
      this.#accepted = true;
      if (this.#hostId && !this.#peer) host("wsAccept", this.#hostId);
      const pending = this.#pending;
      this.#pending = [];
      for (const ev of pending) this.#deliver(ev);
    }
    send(data) {
      if (!this.#accepted) throw new TypeError("You must call accept() on this WebSocket before sending messages.");
      if (this.#state >= CLOSING) throw new TypeError("Can't call WebSocket send() after close().");
      let payload;
      if (typeof data === "string") payload = data;
      else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) payload = toU8(data).slice().buffer;
      else payload = String(data);
      if (this.#hostId) host("wsSend", this.#hostId, payload);
      else if (this.#peer) { const peer = this.#peer; queueMicrotask(() => peer.#receive("message", payload)); }
    }
    close(code, reason) {
      if (code !== undefined) {
        code = Number(code);
        if (!(code === 1000 || (code >= 3000 && code <= 4999))) throw new DOMException(`Invalid WebSocket close code ${code}.`, "InvalidAccessError");
      }
      reason = reason === undefined ? "" : String(reason);
      if (B.utf8(reason).length > 123) throw new DOMException("The WebSocket close reason is too long.", "SyntaxError");
      if (this.#state >= CLOSING) return;
      this.#state = CLOSING;
      if (this.#hostId) host("wsClose", this.#hostId, code === undefined ? 1000 : code, reason);
      else if (this.#peer) { const peer = this.#peer; queueMicrotask(() => peer.#receive("close", code === undefined ? 1005 : code, reason, true)); }
    }
    serializeAttachment(v) { this.#attachment = structuredClone(v); }
    deserializeAttachment() { return this.#attachment === undefined ? null : structuredClone(this.#attachment); }

    // #receive takes a frame arriving for this end; before accept() it waits.
    #receive(kind, a, b, c) {
      let ev;
      if (kind === "message") ev = new MessageEvent("message", { data: a });
      else if (kind === "close") ev = new CloseEvent("close", { code: a, reason: b, wasClean: c });
      else ev = new ErrorEvent("error", { message: String(a) });
      if (kind === "close") {
        // The closing handshake ends here; a close we did not start is
        // echoed, as the Go side does for a real connection.
        const started = this.#state === CLOSING;
        this.#state = CLOSED;
        if (this.#hostId) sockets.delete(this.#hostId);
        else if (this.#peer && !started) this.#peer.#receive("close", a, b, c);
      }
      if (this.#transferred) return;
      if (!this.#accepted) { this.#pending.push(ev); return; }
      this.#deliver(ev);
    }
    #deliver(ev) {
      const tag = B.tag;
      B.tag = this.#tag;
      try {
        if (ev.type === "close" && !ev.wasClean) this.dispatchEvent(new ErrorEvent("error", { message: "WebSocket disconnected without sending Close frame." }));
        this.dispatchEvent(ev);
      } finally { B.tag = tag; }
    }

    static {
      // Internal entry points, closed over below and then removed.
      WebSocket._pair = () => {
        const a = new WebSocket(key), b = new WebSocket(key);
        a.#peer = b; b.#peer = a;
        return [a, b];
      };
      WebSocket._fromHost = (id, url, protocol) => {
        const ws = new WebSocket(key);
        ws.#hostId = id; ws.#url = url; ws.#protocol = protocol || "";
        sockets.set(id, ws);
        return ws;
      };
      // _transfer hands ws to Go for the response of request tag and
      // returns the Go socket id the response carries.
      WebSocket._transfer = (ws, tag) => {
        if (!(ws instanceof WebSocket)) throw new TypeError("webSocket must be a WebSocket");
        if (ws.#transferred) throw new TypeError("This WebSocket was already used in a response.");
        if (ws.#accepted) throw new TypeError("Can't return a WebSocket that was accept()ed in a response: return the other end of the WebSocketPair.");
        if (ws.#hostId && !ws.#peer) {
          // A fetched WebSocket nobody accepted: Go proxies it.
          sockets.delete(ws.#hostId);
          ws.#transferred = true;
          return ws.#hostId;
        }
        const peer = ws.#peer;
        const id = host("wsCreate", tag);
        ws.#transferred = true;
        ws.#peer = null;
        peer.#peer = null;
        peer.#hostId = id;
        sockets.set(id, peer);
        // What the server end sent before the response went out.
        for (const ev of ws.#pending) {
          if (ev.type === "message") host("wsSend", id, ev.data);
          else if (ev.type === "close") host("wsClose", id, ev.code === 1005 ? 1000 : ev.code, ev.reason);
        }
        ws.#pending = [];
        return id;
      };
      WebSocket._hostEvent = (id, kind, a, b, c) => {
        const ws = sockets.get(id);
        if (ws) ws.#receive(kind, a, b, c);
      };
    }
  }
  const pair = WebSocket._pair, fromHost = WebSocket._fromHost, transfer = WebSocket._transfer, hostEvent = WebSocket._hostEvent;
  delete WebSocket._pair; delete WebSocket._fromHost; delete WebSocket._transfer; delete WebSocket._hostEvent;

  class WebSocketPair {
    constructor() {
      const [client, server] = pair();
      Object.defineProperty(this, 0, { value: client, enumerable: true });
      Object.defineProperty(this, 1, { value: server, enumerable: true });
    }
    *[Symbol.iterator]() { yield this[0]; yield this[1]; }
  }

  g.__berth_ws = hostEvent;
  B.wsTransfer = transfer;
  B.wsFromHost = fromHost;
  for (const [k, v] of Object.entries({ WebSocket, WebSocketPair, MessageEvent, CloseEvent, ErrorEvent })) define(k, v);
})(globalThis);
