// Headers, Request, Response, Blob, FormData, fetch, crypto, structuredClone
// and the request dispatcher. Evaluated after runtime.js and deps.js.
(function (g) {
  "use strict";
  const B = g.__berth;
  const { host, hostAsync, toU8, toHostBuffer, isBufferSource, utf8, concatBytes } = B;
  const define = (name, value) => Object.defineProperty(g, name, { value, writable: true, configurable: true, enumerable: false });

  // ---- URL, streams (reference implementations from deps.js) -----------------
  const deps = g.__berthDeps;
  delete g.__berthDeps;
  for (const k of Object.keys(deps)) define(k, deps[k]);

  // URL keeps the URL record of the URL Standard's parser (whatwg-url's
  // basicURLParse, behind fast-url.js) and answers its getters with the
  // standard's serializers. Setters and searchParams need whatwg-url's own
  // URL, whose URLSearchParams and query update each other: the first use of
  // one makes that URL from the same input, and every later call goes to it.
  // Until then a URL only reads its record, so the records of recent inputs
  // (and what the getters made of them) are shared: a Worker makes the same
  // few URLs over and over, and whatwg-url's generated WebIDL wrapper costs
  // several microseconds per construction in the interpreter.
  const WhatwgURL = deps.URL;
  const urlRecords = g.__berthURLRecords;
  delete g.__berthURLRecords;
  const usvString = (v, context) => {
    if (typeof v === "symbol") throw new TypeError(`${context} is a symbol, which cannot be converted to a string.`);
    return String(v).toWellFormed();
  };
  // parsedURL returns the entry of url against base ({ rec, input, base,
  // and the getters' results once asked }), or the message of the
  // TypeError the URL constructor throws.
  const urlEntries = new Map();
  const parsedURL = (url, base) => {
    if (base === undefined) {
      let e = urlEntries.get(url);
      if (e === undefined) {
        const rec = urlRecords.basicURLParse(url);
        e = rec === null ? `Invalid URL: ${url}` : { rec, input: url, base };
        if (urlEntries.size >= 512) urlEntries.clear();
        urlEntries.set(url, e);
      }
      return e;
    }
    const parsedBase = urlRecords.basicURLParse(base);
    if (parsedBase === null) return `Invalid base URL: ${base}`;
    const rec = urlRecords.basicURLParse(url, { baseURL: parsedBase });
    return rec === null ? `Invalid URL: ${url}` : { rec, input: url, base };
  };
  const urlHref = (e) => (e.href ??= urlRecords.serializeURL(e.rec));
  const urlArg = (what, args, i) => {
    if (args.length < 1) throw new TypeError(`Failed to ${what}: 1 argument required, but only 0 present.`);
    const v = args[i];
    return i === 1 && v === undefined ? undefined : usvString(v, `Failed to ${what}: parameter ${i + 1}`);
  };
  const madeURL = Symbol("madeURL");
  class URL {
    #e; #full = null;
    constructor(url, base = undefined) {
      if (url === madeURL) { this.#e = base; return; }
      const e = parsedURL(urlArg("construct 'URL'", arguments, 0), urlArg("construct 'URL'", arguments, 1));
      if (typeof e === "string") throw new TypeError(e);
      this.#e = e;
    }
    #whatwg() { return this.#full ??= new WhatwgURL(this.#e.input, this.#e.base); }
    get href() { return this.#full ? this.#full.href : urlHref(this.#e); }
    set href(v) { this.#whatwg().href = v; }
    get origin() { return this.#full ? this.#full.origin : (this.#e.origin ??= urlRecords.serializeURLOrigin(this.#e.rec)); }
    get protocol() { return this.#full ? this.#full.protocol : this.#e.rec.scheme + ":"; }
    set protocol(v) { this.#whatwg().protocol = v; }
    get username() { return this.#full ? this.#full.username : this.#e.rec.username; }
    set username(v) { this.#whatwg().username = v; }
    get password() { return this.#full ? this.#full.password : this.#e.rec.password; }
    set password(v) { this.#whatwg().password = v; }
    get host() {
      if (this.#full) return this.#full.host;
      const r = this.#e.rec;
      if (r.host === null) return "";
      return r.port === null ? urlRecords.serializeHost(r.host) : urlRecords.serializeHost(r.host) + ":" + urlRecords.serializeInteger(r.port);
    }
    set host(v) { this.#whatwg().host = v; }
    get hostname() { return this.#full ? this.#full.hostname : this.#e.rec.host === null ? "" : urlRecords.serializeHost(this.#e.rec.host); }
    set hostname(v) { this.#whatwg().hostname = v; }
    get port() { return this.#full ? this.#full.port : this.#e.rec.port === null ? "" : urlRecords.serializeInteger(this.#e.rec.port); }
    set port(v) { this.#whatwg().port = v; }
    get pathname() { return this.#full ? this.#full.pathname : (this.#e.pathname ??= urlRecords.serializePath(this.#e.rec)); }
    set pathname(v) { this.#whatwg().pathname = v; }
    get search() {
      if (this.#full) return this.#full.search;
      const q = this.#e.rec.query;
      return q === null || q === "" ? "" : "?" + q;
    }
    set search(v) { this.#whatwg().search = v; }
    get searchParams() { return this.#whatwg().searchParams; }
    get hash() {
      if (this.#full) return this.#full.hash;
      const f = this.#e.rec.fragment;
      return f === null || f === "" ? "" : "#" + f;
    }
    set hash(v) { this.#whatwg().hash = v; }
    toJSON() { return this.href; }
    toString() { return this.href; }
    static parse(url, base = undefined) {
      const e = parsedURL(urlArg("execute 'parse' on 'URL'", arguments, 0), urlArg("execute 'parse' on 'URL'", arguments, 1));
      return typeof e === "string" ? null : new URL(madeURL, e);
    }
    static canParse(url, base = undefined) {
      return typeof parsedURL(urlArg("execute 'canParse' on 'URL'", arguments, 0), urlArg("execute 'canParse' on 'URL'", arguments, 1)) !== "string";
    }
  }
  // As WebIDL has them: attributes and operations enumerable.
  for (const k of ["toJSON", "href", "toString", "origin", "protocol", "username", "password", "host", "hostname", "port", "pathname", "search", "searchParams", "hash"])
    Object.defineProperty(URL.prototype, k, { enumerable: true });
  Object.defineProperty(URL.prototype, Symbol.toStringTag, { value: "URL", configurable: true });
  Object.defineProperties(URL, { parse: { enumerable: true }, canParse: { enumerable: true } });
  define("URL", URL);
  const { ReadableStream, TransformStream } = deps;
  class IdentityTransformStream extends TransformStream {
    constructor() { super({ transform(chunk, c) { c.enqueue(toU8(chunk)); } }); }
  }
  class FixedLengthStream extends IdentityTransformStream {
    constructor(length) { super(); this.expectedLength = Number(length); }
  }
  define("IdentityTransformStream", IdentityTransformStream);
  define("FixedLengthStream", FixedLengthStream);
  define("TextEncoderStream", class TextEncoderStream extends TransformStream {
    constructor() { super({ transform(chunk, c) { const b = utf8(chunk); if (b.length) c.enqueue(b); } }); }
    get encoding() { return "utf-8"; }
  });
  define("TextDecoderStream", class TextDecoderStream extends TransformStream {
    constructor(label, options) {
      const d = new TextDecoder(label, options);
      super({ transform(chunk, c) { const s = d.decode(chunk, { stream: true }); if (s) c.enqueue(s); }, flush(c) { const s = d.decode(); if (s) c.enqueue(s); } });
    }
    get encoding() { return "utf-8"; }
  });


  // ---- Headers ------------------------------------------------------------------------
  const tokenRe = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const normValue = (v) => String(v).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
  // Scripts use the same few header names all the time; remember the
  // lowercased form of names already checked.
  const checkedNames = new Map();
  const checkName = (n) => {
    if (typeof n === "string") { const c = checkedNames.get(n); if (c !== undefined) return c; }
    n = String(n);
    if (!tokenRe.test(n)) throw new TypeError(`Invalid header name "${n}"`);
    const lower = n.toLowerCase();
    if (checkedNames.size >= 256) checkedNames.clear();
    checkedNames.set(n, lower);
    return lower;
  };
  // And the values: the same few come again and again (a content type,
  // "gzip"), and the two regular expressions cost more than a lookup.
  const checkedValues = new Map();
  const badValue = /[\0\r\n]/;
  const checkValue = (v) => {
    const short = typeof v === "string" && v.length <= 128;
    if (short) { const c = checkedValues.get(v); if (c !== undefined) return c; }
    const n = normValue(v);
    if (badValue.test(n)) throw new TypeError("Invalid header value");
    if (short) {
      if (checkedValues.size >= 512) checkedValues.clear();
      checkedValues.set(v, n);
    }
    return n;
  };
  const guardKey = Symbol("guard");
  class Headers {
    #list = []; // [lowercased name, value] in insertion order
    #guard = "none";
    constructor(init) {
      if (init == null) return;
      // Index loops: for…of goes through the iterator protocol, several
      // times slower in this interpreter.
      if (init instanceof Headers) { const l = init.#list; for (let i = 0; i < l.length; i++) this.#list.push([l[i][0], l[i][1]]); return; }
      if (typeof init !== "object") throw new TypeError("Headers: init must be an object or iterable");
      if (typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          const a = [...pair];
          if (a.length !== 2) throw new TypeError("Headers: each header pair must have exactly two items");
          this.append(a[0], a[1]);
        }
      } else {
        const keys = Object.keys(init);
        for (let i = 0; i < keys.length; i++) this.#list.push([checkName(keys[i]), checkValue(init[keys[i]])]);
      }
    }
    #mutable() { if (this.#guard === "immutable") throw new TypeError("Can't modify immutable headers."); }
    append(name, value) { this.#mutable(); this.#list.push([checkName(name), checkValue(value)]); }
    set(name, value) {
      this.#mutable();
      const n = checkName(name), v = checkValue(value);
      const i = this.#list.findIndex((e) => e[0] === n);
      if (i < 0) { this.#list.push([n, v]); return; }
      this.#list[i][1] = v;
      this.#list = this.#list.filter((e, j) => j <= i || e[0] !== n);
    }
    delete(name) { this.#mutable(); const n = checkName(name); this.#list = this.#list.filter((e) => e[0] !== n); }
    get(name) {
      const n = checkName(name), list = this.#list;
      let v = null;
      for (let i = 0; i < list.length; i++) if (list[i][0] === n) v = v === null ? list[i][1] : v + ", " + list[i][1];
      return v;
    }
    getAll(name) { const n = checkName(name); return this.#list.filter((e) => e[0] === n).map((e) => e[1]); }
    getSetCookie() { return this.#list.filter((e) => e[0] === "set-cookie").map((e) => e[1]); }
    has(name) {
      const n = checkName(name), list = this.#list;
      for (let i = 0; i < list.length; i++) if (list[i][0] === n) return true;
      return false;
    }
    *entries() {
      const names = [...new Set(this.#list.map((e) => e[0]))].sort();
      for (const n of names) {
        if (n === "set-cookie") { for (const v of this.getSetCookie()) yield [n, v]; } else yield [n, this.get(n)];
      }
    }
    *keys() { for (const [k] of this.entries()) yield k; }
    *values() { for (const [, v] of this.entries()) yield v; }
    forEach(cb, thisArg) { for (const [k, v] of this.entries()) cb.call(thisArg, v, k, this); }
    [Symbol.iterator]() { return this.entries(); }
    get [Symbol.toStringTag]() { return "Headers"; }
    // Internal: flat "name\nvalue\n…" for Go, and guards.
    static [guardKey](h, guard) { h.#guard = guard; return h; }
    static _addTrusted(h, name, value) { h.#list.push([name, value]); }
    static _flat(h) { const l = h.#list; let s = ""; for (let i = 0; i < l.length; i++) s += l[i][0] + "\n" + l[i][1] + "\n"; return s; }
    static _fromFlat(flat, guard) {
      const h = new Headers();
      if (flat) { const p = flat.split("\n"); for (let i = 0; i + 1 < p.length; i += 2) h.#list.push([p[i], p[i + 1]]); }
      h.#guard = guard || "none";
      return h;
    }
  }
  const flatHeaders = Headers._flat, headersFromFlat = Headers._fromFlat, setGuard = Headers[guardKey], addTrusted = Headers._addTrusted;
  delete Headers._flat; delete Headers._fromFlat; delete Headers._addTrusted;

  // ---- Blob / File --------------------------------------------------------------------------
  class Blob {
    #bytes; #type;
    constructor(parts = [], options = {}) {
      const chunks = []; let total = 0;
      for (const p of parts) {
        const b = p instanceof Blob ? p.#bytes : isBufferSource(p) ? toU8(p).slice() : utf8(p);
        chunks.push(b); total += b.byteLength;
      }
      this.#bytes = concatBytes(chunks, total);
      if (chunks.length === 1 && chunks[0] === this.#bytes && parts[0] instanceof Blob) this.#bytes = this.#bytes.slice();
      const t = options && options.type !== undefined ? String(options.type) : "";
      this.#type = /^[\x20-\x7e]*$/.test(t) ? t.toLowerCase() : "";
    }
    get size() { return this.#bytes.byteLength; }
    get type() { return this.#type; }
    slice(start = 0, end = this.size, type = "") {
      const n = this.size;
      const rel = (x) => (x < 0 ? Math.max(n + x, 0) : Math.min(x, n));
      const b = new Blob([], { type });
      b.#bytes = this.#bytes.slice(rel(start), Math.max(rel(start), rel(end)));
      return b;
    }
    async arrayBuffer() { return this.#bytes.slice().buffer; }
    async bytes() { return this.#bytes.slice(); }
    async text() { return host("utf8Decode", this.#bytes.slice().buffer, false, false); }
    stream() { const b = this.#bytes; return new ReadableStream({ start(c) { if (b.length) c.enqueue(b.slice()); c.close(); } }); }
    static _bytes(b) { return b.#bytes; }
    get [Symbol.toStringTag]() { return "Blob"; }
  }
  const blobBytes = Blob._bytes; delete Blob._bytes;
  class File extends Blob {
    #name; #lastModified;
    constructor(parts, name, options = {}) {
      super(parts, options);
      this.#name = String(name);
      this.#lastModified = options.lastModified !== undefined ? Number(options.lastModified) : Date.now();
    }
    get name() { return this.#name; }
    get lastModified() { return this.#lastModified; }
    get [Symbol.toStringTag]() { return "File"; }
  }

  // ---- FormData -------------------------------------------------------------------------------
  const toEntryValue = (value, filename) => {
    if (value instanceof Blob) {
      if (!(value instanceof File) || filename !== undefined) return new File([value], filename !== undefined ? filename : "blob", { type: value.type });
      return value;
    }
    return String(value);
  };
  class FormData {
    #entries = [];
    constructor(form) { if (form !== undefined) throw new TypeError("FormData: form elements are not supported"); }
    append(name, value, filename) { this.#entries.push([String(name), toEntryValue(value, filename)]); }
    set(name, value, filename) {
      name = String(name);
      const e = [name, toEntryValue(value, filename)];
      const i = this.#entries.findIndex((x) => x[0] === name);
      if (i < 0) this.#entries.push(e);
      else this.#entries = this.#entries.filter((x, j) => j < i || x[0] !== name).map((x, j) => (j === i ? e : x)), this.#entries.splice(i, 0, e);
    }
    get(name) { const e = this.#entries.find((x) => x[0] === String(name)); return e ? e[1] : null; }
    getAll(name) { return this.#entries.filter((x) => x[0] === String(name)).map((x) => x[1]); }
    has(name) { return this.#entries.some((x) => x[0] === String(name)); }
    delete(name) { this.#entries = this.#entries.filter((x) => x[0] !== String(name)); }
    *entries() { for (const e of this.#entries) yield [e[0], e[1]]; }
    *keys() { for (const e of this.#entries) yield e[0]; }
    *values() { for (const e of this.#entries) yield e[1]; }
    forEach(cb, thisArg) { for (const [k, v] of this.entries()) cb.call(thisArg, v, k, this); }
    [Symbol.iterator]() { return this.entries(); }
    get [Symbol.toStringTag]() { return "FormData"; }
  }
  const escapeMultipartName = (s) => s.replace(/\r\n|\r|\n/g, "\r\n").replace(/\n/g, "%0A").replace(/\r/g, "%0D").replace(/"/g, "%22");
  function encodeMultipart(fd) {
    const boundary = "----berthFormBoundary" + host("randomHex", 12);
    const chunks = []; let total = 0;
    const push = (b) => { chunks.push(b); total += b.byteLength; };
    for (const [name, value] of fd) {
      let head = `--${boundary}\r\nContent-Disposition: form-data; name="${escapeMultipartName(name)}"`;
      if (value instanceof File) {
        head += `; filename="${escapeMultipartName(value.name)}"\r\nContent-Type: ${value.type || "application/octet-stream"}\r\n\r\n`;
        push(utf8(head)); push(blobBytes(value)); push(utf8("\r\n"));
      } else push(utf8(head + "\r\n\r\n" + value.replace(/\r(?!\n)|(?<!\r)\n/g, "\r\n") + "\r\n"));
    }
    push(utf8(`--${boundary}--\r\n`));
    return { bytes: concatBytes(chunks, total), type: "multipart/form-data; boundary=" + boundary };
  }
  function parseFormData(bytes, contentType) {
    const fd = new FormData();
    const ct = (contentType || "").toLowerCase();
    if (ct.startsWith("application/x-www-form-urlencoded")) {
      for (const [k, v] of new URLSearchParams(host("utf8Decode", toHostBuffer(bytes), false, false))) fd.append(k, v);
      return fd;
    }
    if (ct.startsWith("multipart/form-data")) {
      // Go's mime/multipart parses; parts come back as [name, filename|null, type, bytes] quads.
      const parts = host("parseMultipart", contentType, toHostBuffer(bytes));
      for (const p of JSON.parse(parts)) {
        const data = new Uint8Array(host("base64Decode", p[3]));
        if (p[1] === null) fd.append(p[0], host("utf8Decode", data.buffer, false, false));
        else fd.append(p[0], new File([data], p[1], { type: p[2] }));
      }
      return fd;
    }
    throw new TypeError(`Cannot parse body of content type "${contentType}" as FormData`);
  }

  // ---- bodies -----------------------------------------------------------------------------------
  // A body is held as: null, a string, a Uint8Array, a ReadableStream, or a
  // Go-side handle {hostBody: handle} that is read only when JS asks, and
  // handed back to Go untouched when the body only passes through.
  function extractBody(body) {
    if (body == null) return { source: null, type: null };
    if (typeof body === "string") return { source: body, type: "text/plain;charset=UTF-8" };
    if (body instanceof URLSearchParams) return { source: body.toString(), type: "application/x-www-form-urlencoded;charset=UTF-8" };
    if (isBufferSource(body)) return { source: toU8(body).slice(), type: null };
    if (body instanceof Blob) return { source: blobBytes(body), type: body.type || null };
    if (body instanceof FormData) { const m = encodeMultipart(body); return { source: m.bytes, type: m.type }; }
    if (body instanceof ReadableStream) return { source: body, type: null };
    return { source: String(body), type: "text/plain;charset=UTF-8" };
  }
  // hostHandle marks a stream over a host body that nobody has read yet.
  const hostHandle = Symbol("hostHandle");
  const hostStream = (handle) => {
    const stream = new ReadableStream({
      type: "bytes",
      async pull(c) {
        stream[hostHandle] = 0;
        const [chunk] = await hostAsync("readChunk", handle);
        if (chunk === null) { c.close(); if (c.byobRequest) c.byobRequest.respond(0); return; }
        c.enqueue(new Uint8Array(chunk));
      },
      cancel() { host("closeBody", handle); },
    });
    stream[hostHandle] = handle;
    return stream;
  };
  // passThroughHandle returns the host handle of a body source that can go
  // back to Go without passing through JS, or 0.
  const passThroughHandle = (src) => {
    if (src === null || typeof src !== "object") return 0;
    if (src.hostBody) return src.hostBody;
    if (src instanceof ReadableStream && src[hostHandle] && !src.locked) return src[hostHandle];
    return 0;
  };
  async function readStream(stream) {
    const reader = stream.getReader();
    const chunks = []; let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const b = typeof value === "string" ? utf8(value) : toU8(value);
      chunks.push(b); total += b.byteLength;
    }
    return concatBytes(chunks, total);
  }
  const bodyKey = Symbol("body");
  class Body {
    constructor(source) { this[bodyKey] = { source, used: false, stream: null }; }
    get body() {
      const b = this[bodyKey];
      if (b.source === null) return null;
      if (!b.stream) {
        const s = b.source;
        if (s instanceof ReadableStream) b.stream = s;
        else if (s && s.hostBody) b.stream = hostStream(s.hostBody);
        else {
          const bytes = typeof s === "string" ? utf8(s) : s;
          b.stream = new ReadableStream({ type: "bytes", start(c) { if (bytes.length) c.enqueue(bytes.slice()); c.close(); } });
        }
        b.source = b.stream;
      }
      return b.stream;
    }
    get bodyUsed() { const b = this[bodyKey]; return b.used || (b.stream !== null && b.stream.locked && b.disturbed === true); }
    #take() {
      const b = this[bodyKey];
      if (b.used) throw new TypeError("Body has already been used. It can only be used once. Use tee() first if you need to read it twice.");
      if (b.stream && b.stream.locked) throw new TypeError("The body's stream is locked.");
      b.used = true;
      return b.source;
    }
    async #bytes() {
      const s = this.#take();
      if (s === null) return new Uint8Array(0);
      if (typeof s === "string") return utf8(s);
      if (s instanceof Uint8Array) return s;
      if (s.hostBody) { const [ab] = await hostAsync("readBody", s.hostBody); return new Uint8Array(ab); }
      if (s[hostHandle] && !s.locked) { const [ab] = await hostAsync("readBody", s[hostHandle]); return new Uint8Array(ab); }
      return readStream(s);
    }
    async text() {
      const b = this[bodyKey];
      if (typeof b.source === "string" && !b.used) { b.used = true; return b.source; }
      const bytes = await this.#bytes();
      return bytes.length ? host("utf8Decode", toHostBuffer(bytes), false, false) : "";
    }
    async json() { return JSON.parse(await this.text()); }
    async arrayBuffer() { const b = await this.#bytes(); return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b.buffer : b.slice().buffer; }
    async bytes() { return new Uint8Array(await this.arrayBuffer()); }
    async blob() { const b = await this.#bytes(); return new Blob([b], { type: this.headers.get("content-type") || "" }); }
    async formData() { const b = await this.#bytes(); return parseFormData(b, this.headers.get("content-type")); }
  }
  function cloneBody(from) {
    const b = from[bodyKey];
    if (b.used) throw new TypeError("Cannot clone a body that has already been used.");
    if (b.source instanceof ReadableStream || (b.source && b.source.hostBody)) {
      const [s1, s2] = from.body.tee();
      b.stream = s1; b.source = s1;
      return s2;
    }
    return b.source;
  }

  // ---- Request ------------------------------------------------------------------------------------
  const methods = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"];
  const normMethod = (m) => {
    m = String(m);
    if (!tokenRe.test(m)) throw new TypeError(`Invalid HTTP method "${m}"`);
    const u = m.toUpperCase();
    if (u === "CONNECT" || u === "TRACE" || u === "TRACK") throw new TypeError(`HTTP method "${m}" is forbidden`);
    return methods.includes(u) && u !== "PATCH" ? u : u === "PATCH" ? m : m;
  };
  // incoming marks the runtime's own construction of an incoming request:
  // the URL is already canonical and the headers stay a flat string until
  // the script looks at them.
  const incoming = Symbol("incoming");
  const redirectModes = ["follow", "manual", "error"];
  // hrefOf is new URL(input).href, without the URL: the parsed entries of
  // recent inputs (parsedURL) keep their href.
  const hrefOf = (input) => {
    const s = String(input);
    const e = parsedURL(s.toWellFormed());
    if (typeof e === "string") throw new TypeError(`Invalid URL: ${s}`);
    return urlHref(e);
  };
  class Request extends Body {
    // #headers is made from #flat (the wire form) when first asked for, with
    // #flatGuard: most requests are passed on without their headers read.
    #url; #method; #headers = null; #flat = ""; #flatGuard = "immutable"; #signal = null; #redirect = "follow"; #cf; #integrity = "";
    constructor(input, init = {}) {
      if (input === incoming) {
        super(init.source);
        this.#url = init.url; this.#method = init.method; this.#flat = init.headers; this.#cf = init.cf;
        return;
      }
      const src = input instanceof Request ? input : null;
      if (!src && init instanceof Request && init[bodyKey].source === null) {
        // new Request(url, request) without a body, as a proxy makes:
        // request's members read directly, its headers copied unparsed.
        super(null);
        this.#url = hrefOf(input);
        this.#method = init.#method;
        if (init.#headers === null) { this.#flat = init.#flat; this.#flatGuard = "none"; } else this.#headers = new Headers(init.#headers);
        this.#signal = init.#signal; this.#redirect = init.#redirect; this.#cf = init.#cf; this.#integrity = init.#integrity;
        return;
      }
      init = init || {};
      const body = init.body !== undefined ? extractBody(init.body) : null;
      const method = init.method !== undefined ? normMethod(init.method) : src ? src.#method : "GET";
      if ((method === "GET" || method === "HEAD") && ((body && body.source !== null) || (!body && src && src[bodyKey].source !== null && init.method !== undefined)))
        throw new TypeError("Request with a GET or HEAD method cannot have a body.");
      // A Request made from another takes over its body (the Fetch
      // standard's transfer), so a host body stays a host body.
      let source = null;
      if (body) source = body.source;
      else if (src && src[bodyKey].source !== null) {
        const sb = src[bodyKey];
        if (sb.used || (sb.stream && sb.stream.locked)) throw new TypeError("Cannot construct a Request with a Request whose body has already been used.");
        source = sb.source; sb.used = true;
      }
      super(source);
      this.#url = src ? src.#url : hrefOf(input);
      this.#method = method;
      if (init.headers === undefined && src && src.#headers === null) { this.#flat = src.#flat; this.#flatGuard = "none"; }
      else this.#headers = new Headers(init.headers !== undefined ? init.headers : src ? src.headers : undefined);
      if (body && body.type && !this.headers.has("content-type")) this.headers.set("content-type", body.type);
      this.#signal = init.signal !== undefined ? init.signal : src ? src.#signal : null;
      this.#redirect = init.redirect !== undefined ? String(init.redirect) : src ? src.#redirect : "follow";
      if (!redirectModes.includes(this.#redirect)) throw new TypeError(`Invalid redirect value "${this.#redirect}"`);
      this.#cf = init.cf !== undefined ? init.cf : src ? src.#cf : undefined;
      this.#integrity = init.integrity !== undefined ? String(init.integrity) : "";
    }
    get url() { return this.#url; }
    get method() { return this.#method; }
    get headers() {
      if (this.#headers === null) this.#headers = headersFromFlat(this.#flat, this.#flatGuard);
      return this.#headers;
    }
    get signal() { return this.#signal || (this.#signal = new AbortController().signal); }
    get redirect() { return this.#redirect; }
    get cf() { return this.#cf; }
    get integrity() { return this.#integrity; }
    get keepalive() { return false; }
    get cache() { return undefined; }
    get fetcher() { return null; }
    clone() {
      const r = new Request(this.#url, { method: this.#method, headers: this.headers, redirect: this.#redirect, signal: this.#signal, cf: this.#cf });
      r[bodyKey].source = cloneBody(this);
      return r;
    }
    static _flat(r) { return r.#headers === null ? r.#flat : flatHeaders(r.#headers); }
    static _signal(r) { return r.#signal; }
    get [Symbol.toStringTag]() { return "Request"; }
  }
  const requestFlatHeaders = Request._flat, requestSignal = Request._signal; delete Request._flat; delete Request._signal;

  // ---- Response -----------------------------------------------------------------------------------
  const nullBodyStatus = [101, 204, 205, 304];
  const internalResponse = Symbol("internalResponse");
  let jsonBody = false; // set while Response.json constructs its Response
  class Response extends Body {
    // As for Request: the headers of a response the runtime made stay in
    // wire form (#flat) until a script asks for them.
    #status; #statusText; #headers = null; #flat = ""; #flatGuard = "immutable"; #webSocket = null; #url = ""; #redirected = false; #type = "default";
    constructor(body = null, init = undefined) {
      if (body === internalResponse) {
        super(init.source);
        this.#status = init.status; this.#statusText = init.statusText; this.#flat = init.flat;
        return;
      }
      const json = jsonBody;
      jsonBody = false;
      let status = 200, statusText = "", ws = null, headersInit;
      if (init != null) {
        if (init.status !== undefined) status = Number(init.status);
        ws = init.webSocket || null;
        if (!Number.isInteger(status) || ((status < 200 || status > 599) && !(status === 101 && ws)))
          throw new RangeError(`Responses may only be constructed with status codes in the range 200 to 599, inclusive.`);
        if (init.statusText !== undefined) {
          statusText = String(init.statusText);
          if (/[^\t\x20-\x7e\x80-\xff]/.test(statusText)) throw new TypeError("Invalid statusText");
        }
        headersInit = init.headers;
        if (init.encodeBody !== undefined && init.encodeBody !== "automatic" && init.encodeBody !== "manual") throw new TypeError("Invalid encodeBody");
      }
      const b = extractBody(body);
      if (b.source !== null && nullBodyStatus.includes(status)) throw new TypeError(`Response with null body status (${status}) cannot have a body.`);
      super(b.source);
      this.#status = status;
      this.#statusText = statusText;
      const type = json ? "application/json" : b.type;
      if (headersInit === undefined) {
        // No headers given: the content type alone, in wire form.
        this.#flat = type ? "content-type\n" + type + "\n" : "";
        this.#flatGuard = "none";
      } else {
        this.#headers = new Headers(headersInit);
        if (type && !this.#headers.has("content-type")) addTrusted(this.#headers, "content-type", type);
      }
      this.#webSocket = ws;
    }
    get status() { return this.#status; }
    get statusText() { return this.#statusText; }
    get ok() { return this.#status >= 200 && this.#status < 300; }
    get headers() { return this.#headers ??= headersFromFlat(this.#flat, this.#flatGuard); }
    get webSocket() { return this.#webSocket; }
    get url() { return this.#url; }
    get redirected() { return this.#redirected; }
    get type() { return this.#type; }
    clone() {
      if (this.#webSocket) throw new TypeError("Cannot clone a response to a WebSocket handshake.");
      const r = new Response(null, { status: this.#status, statusText: this.#statusText, headers: this.headers });
      r[bodyKey].source = cloneBody(this);
      r.#url = this.#url; r.#redirected = this.#redirected; r.#type = this.#type;
      return r;
    }
    static json(data, init = {}) {
      const s = JSON.stringify(data);
      if (s === undefined) throw new TypeError("Response.json: value is not JSON-serializable");
      jsonBody = true;
      try { return new Response(s, init); } finally { jsonBody = false; }
    }
    static redirect(url, status = 302) {
      if (![301, 302, 303, 307, 308].includes(status)) throw new RangeError(`Invalid redirect status ${status}`);
      const href = new URL(String(url)).href;
      return new Response(null, { status, headers: { location: href } });
    }
    static error() { const r = new Response(null, { status: 200 }); r.#status = 0; r.#type = "error"; setGuard(r.headers, "immutable"); return r; }
    static _flat(r) { return r.#headers === null ? r.#flat : flatHeaders(r.#headers); }
    static _fetched(r, url, redirected) { r.#url = url; r.#redirected = redirected; r.#type = "basic"; return r; }
    get [Symbol.toStringTag]() { return "Response"; }
  }
  const markFetched = Response._fetched, responseFlatHeaders = Response._flat; delete Response._fetched; delete Response._flat;
  // makeResponse is a Response from parts the runtime vouches for: headers
  // in wire form, the body a source as Body keeps it.
  const makeResponse = (status, statusText, flat, source) => new Response(internalResponse, { status, statusText, flat, source });

  // ---- fetch ------------------------------------------------------------------------------------------
  // bodyEndKey is the property, on a Response from a container port, of a
  // promise that settles when the response body has ended.
  const bodyEndKey = Symbol.for("berth.bodyEnd");
  // The promise is made when first asked for: it costs a host call and a
  // turn of the loop, and the runtime tracks container activity itself.
  const ctBodyKey = Symbol("containerBody"), bodyEndPromise = Symbol("bodyEnd");
  Object.defineProperty(Response.prototype, bodyEndKey, {
    get() {
      if (this[ctBodyKey] === undefined) return undefined;
      return (this[bodyEndPromise] ??= hostAsync("bodyEnd", this[ctBodyKey]).then(() => undefined));
    },
    configurable: true,
  });
  function fetch(input, init) { return fetchTo("", input, init); }
  // fetchTo is fetch with a target other than the network: a Durable
  // Object ("class\n" + id + "\n" + name), which Go reaches through the
  // object host rather than an HTTP client.
  function fetchTo(target, input, init, owned) {
    // A Durable Object gets its own copy of the request wherever it runs
    // (localFetch, or Go), and that copy takes over the body, so
    // stub.fetch(request) passes the request on without copying it first.
    const direct = owned || (init === undefined && input instanceof Request && !input.bodyUsed && target !== "" && target[0] !== "@");
    let req;
    try { req = direct ? input : new Request(input, init); } catch (e) { return Promise.reject(e); }
    return fetchRequest(target, req);
  }
  // fetchRequest is not an async function: the promise it returns is the
  // one Go settles, without the extra turns an async function's return
  // of a promise costs.
  function fetchRequest(target, req) {
    const signal = requestSignal(req); // null: nothing can abort it
    const url = req.url;
    let body = null, stream = null;
    try {
      if (signal) signal.throwIfAborted();
      if (!url.startsWith("http:") && !url.startsWith("https:")) throw new TypeError(`Fetch API cannot load: ${url}`);
      if (target !== "" && target[0] !== "@" && B.localFetch) {
        const local = B.localFetch(target, req);
        if (local !== null) return local;
      }
      // The body goes to Go as a string, bytes, a host body handle (passed
      // through without JS copies) or, for a JS stream, true plus a pump.
      const b = req[bodyKey];
      const src = b.used ? null : b.source;
      if (src !== null) {
        b.used = true;
        if (typeof src === "string") body = src;
        else if (src instanceof Uint8Array) body = toHostBuffer(src);
        else if ((body = passThroughHandle(src)) === 0) { body = true; stream = src; }
      }
    } catch (e) {
      return Promise.reject(e);
    }
    // hostAsyncId reports a failure to start as a rejection, not a throw.
    const op = B.hostAsyncId("fetch", req.method, url, requestFlatHeaders(req), body, req.redirect, B.tag, target);
    // Without a signal or a stream to pump, Go's promise needs no wrapper.
    if (!signal && !stream) return op.promise.then((v) => fetchedResponse(v, req, url, target), (e) => { throw fetchFailure(e); });
    return new Promise((resolve, reject) => {
      const id = op.id, p = op.promise;
      if (stream) pumpSink(id, stream);
      const onAbort = () => { B.cancelOp(id); host("abortFetch", id); reject(signal.reason); };
      if (signal) signal.addEventListener("abort", onAbort, { once: true });
      p.then((v) => {
        if (signal) signal.removeEventListener("abort", onAbort);
        resolve(fetchedResponse(v, req, url, target));
      }, (e) => {
        if (signal) signal.removeEventListener("abort", onAbort);
        reject(fetchFailure(e));
      });
    });
  }
  const fetchFailure = (e) => e instanceof TypeError && e.message.startsWith(remoteErrorMark) ? B.remoteError(e.message.slice(remoteErrorMark.length)) : e;
  // fetchedResponse is the Response of what Go's fetch settled with.
  // Indexing, not array destructuring: that goes through the iterator
  // protocol, several times slower in an interpreter.
  function fetchedResponse(v, req, url, target) {
    const status = v[0], statusText = v[1], headers = v[2], handle = v[3], finalURL = v[4], redirected = v[5], socket = v[6];
    if (socket) {
      const h = headersFromFlat(headers, "immutable");
      const ws = B.wsFromHost(socket, url, h.get("sec-websocket-protocol"));
      return markFetched(new Response(null, { status: 101, statusText, headers: h, webSocket: ws }), url, false);
    }
    const noBody = nullBodyStatus.includes(status) || req.method === "HEAD";
    if (noBody && handle) host("closeBody", handle);
    const r = makeResponse(status, statusText, headers, noBody || !handle ? null : { hostBody: handle });
    // A container's response can tell when its body has ended, wherever
    // it went (bodyEndKey), without piping the body through JavaScript.
    if (!noBody && handle && target.startsWith("@ct\n")) r[ctBodyKey] = handle;
    return markFetched(r, finalURL, redirected);
  }

  // ---- crypto ---------------------------------------------------------------------------------------------
  const hashName = (h) => {
    const n = (typeof h === "string" ? h : h && h.name || "").toUpperCase();
    if (!["SHA-1", "SHA-256", "SHA-384", "SHA-512", "MD5"].includes(n)) throw new DOMException(`Unrecognized hash algorithm "${n}"`, "NotSupportedError");
    return n;
  };
  const keyData = Symbol("keyData");
  class CryptoKey {
    constructor(key, t, alg, extractable, usages, data) {
      if (key !== keyData) throw new TypeError("Illegal constructor");
      this.type = t; this.algorithm = alg; this.extractable = extractable; this.usages = usages;
      Object.defineProperty(this, keyData, { value: data });
      Object.freeze(this);
    }
  }
  const algName = (a) => (typeof a === "string" ? a : a && a.name || "").toUpperCase();
  const subtle = {
    async digest(alg, data) { return host("digest", hashName(alg), toHostBuffer(data)); },
    async importKey(format, data, alg, extractable, usages) {
      if (algName(alg) !== "HMAC") throw new DOMException(`Unrecognized key import algorithm "${algName(alg)}"`, "NotSupportedError");
      if (format !== "raw" && format !== "jwk") throw new DOMException(`Unsupported key format "${format}"`, "NotSupportedError");
      let bytes;
      if (format === "jwk") {
        if (!data || data.kty !== "oct" || typeof data.k !== "string") throw new DOMException("Invalid HMAC JWK", "DataError");
        bytes = new Uint8Array(host("base64Decode", data.k.replace(/-/g, "+").replace(/_/g, "/")));
      } else bytes = toU8(data).slice();
      if (bytes.length === 0) throw new DOMException("HMAC key must not be empty", "DataError");
      for (const u of usages) if (u !== "sign" && u !== "verify") throw new DOMException(`Invalid key usage "${u}" for HMAC`, "SyntaxError");
      const hash = hashName(alg.hash);
      return new CryptoKey(keyData, "secret", { name: "HMAC", hash: { name: hash }, length: (alg.length || bytes.length * 8) }, !!extractable, [...usages], bytes);
    },
    async exportKey(format, key) {
      if (!key.extractable) throw new DOMException("Key is not extractable", "InvalidAccessError");
      if (format === "raw") return key[keyData].slice().buffer;
      throw new DOMException(`Unsupported export format "${format}"`, "NotSupportedError");
    },
    async sign(alg, key, data) {
      if (algName(alg) !== "HMAC" || key.algorithm.name !== "HMAC") throw new DOMException("Unsupported sign algorithm", "NotSupportedError");
      if (!key.usages.includes("sign")) throw new DOMException("Key usages do not include \"sign\"", "InvalidAccessError");
      return host("hmac", key.algorithm.hash.name, key[keyData].slice().buffer, toHostBuffer(data));
    },
    async verify(alg, key, signature, data) {
      if (algName(alg) !== "HMAC" || key.algorithm.name !== "HMAC") throw new DOMException("Unsupported verify algorithm", "NotSupportedError");
      if (!key.usages.includes("verify")) throw new DOMException("Key usages do not include \"verify\"", "InvalidAccessError");
      return host("hmacVerify", key.algorithm.hash.name, key[keyData].slice().buffer, toHostBuffer(data), toHostBuffer(signature));
    },
  };
  const intTypes = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, BigInt64Array, BigUint64Array];
  const crypto = {
    getRandomValues(arr) {
      if (!intTypes.some((T) => arr instanceof T)) throw new DOMException("getRandomValues: argument must be an integer TypedArray", "TypeMismatchError");
      if (arr.byteLength > 65536) throw new DOMException(`getRandomValues: ${arr.byteLength} bytes exceeds the limit of 65536`, "QuotaExceededError");
      toU8(arr).set(new Uint8Array(host("random", arr.byteLength)));
      return arr;
    },
    randomUUID() { return host("uuid"); },
    subtle,
  };

  // ---- structuredClone ------------------------------------------------------------------------------------------
  function structuredClone(value, options) {
    const seen = new Map();
    const fail = (what) => { throw new DOMException(`${what} could not be cloned.`, "DataCloneError"); };
    const clone = (v) => {
      if (v === null || (typeof v !== "object" && typeof v !== "function")) {
        if (typeof v === "symbol") fail(String(v));
        return v;
      }
      if (typeof v === "function") fail(v.toString().slice(0, 40));
      if (seen.has(v)) return seen.get(v);
      let out;
      if (Array.isArray(v)) { out = new Array(v.length); seen.set(v, out); for (const k of Object.keys(v)) out[k] = clone(v[k]); return out; }
      if (v instanceof Date) out = new Date(v.getTime());
      else if (v instanceof RegExp) out = new RegExp(v.source, v.flags);
      else if (v instanceof Boolean || v instanceof Number || v instanceof String || v instanceof BigInt) out = Object(v.valueOf());
      else if (v instanceof ArrayBuffer) out = v.slice(0);
      else if (ArrayBuffer.isView(v)) {
        const buf = clone(v.buffer);
        out = v instanceof DataView ? new DataView(buf, v.byteOffset, v.byteLength) : new v.constructor(buf, v.byteOffset, v.length);
      } else if (v instanceof Map) { out = new Map(); seen.set(v, out); for (const [k, x] of v) out.set(clone(k), clone(x)); return out; }
      else if (v instanceof Set) { out = new Set(); seen.set(v, out); for (const x of v) out.add(clone(x)); return out; }
      else if (v instanceof Error) {
        const ctor = { EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError }[v.name] || Error;
        out = new ctor(v.message); seen.set(v, out);
        if (v.stack !== undefined) out.stack = v.stack;
        if ("cause" in v) out.cause = clone(v.cause);
        return out;
      } else if (v instanceof Blob) out = v.slice(0, v.size, v.type);
      else {
        const proto = Object.getPrototypeOf(v);
        if (proto !== Object.prototype && proto !== null) fail(Object.prototype.toString.call(v));
        out = {}; seen.set(v, out);
        for (const k of Object.keys(v)) out[k] = clone(v[k]);
        return out;
      }
      seen.set(v, out);
      return out;
    };
    if (arguments.length === 0) throw new TypeError("structuredClone: 1 argument required");
    return clone(value);
  }

  for (const [k, v] of Object.entries({ Headers, Request, Response, Blob, File, FormData, fetch, crypto, CryptoKey, structuredClone }))
    define(k, v);
  B.fetchTo = fetchTo;

  // remoteError is the exception a Durable Object's fetch handler threw,
  // as its caller's stub.fetch() throws it: workerd tunnels it with its
  // type and message (not its other properties) and marks it remote.
  // text is "Name: message" as errText gives it.
  const remoteErrorMark = "\x00remote\x00";
  const errorTypes = { Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError };
  B.remoteError = (text) => {
    const m = /^(\w+): ([^]*)$/.exec(text);
    const known = m !== null && Object.hasOwn(errorTypes, m[1]);
    const e = known ? new errorTypes[m[1]](m[2]) : new Error(text);
    e.remote = true;
    return e;
  };

  // For stub.fetch to an object in this runtime (durable.js localFetch):
  // the object's copy of the request and the caller's copy of the
  // response, each taking over the other's body instead of copying it, as
  // the way through Go would stream it.
  // hasFlat tells whether wire-form headers have a header called name.
  const hasFlat = (flat, name) => {
    // Values cannot hold "\n": without name on a line of its own, it is
    // not there (the loop below tells a name from a value that equals it).
    if (!flat.startsWith(name + "\n") && !flat.includes("\n" + name + "\n")) return false;
    for (let i = 0; i < flat.length;) {
      const nl = flat.indexOf("\n", i);
      if (nl < 0) return false;
      if (nl - i === name.length && flat.startsWith(name, i)) return true;
      const end = flat.indexOf("\n", nl + 1);
      if (end < 0) return false;
      i = end + 1;
    }
    return false;
  };
  const takeBody = (r) => {
    const b = r[bodyKey];
    if (b.used || b.source === null) return null;
    if (b.stream && b.stream.locked) throw new TypeError("The body's stream is locked.");
    b.used = true;
    return b.source;
  };
  // flat is req's headers in wire form (B.requestFlat), which the caller
  // has read already.
  B.objectRequest = (req, flat) => {
    const url = req.url, source = takeBody(req);
    if (!hasFlat(flat, "host")) flat += "host\n" + new URL(url).host + "\n";
    if (source !== null && (typeof source === "string" || source instanceof Uint8Array) && !hasFlat(flat, "content-length"))
      flat += "content-length\n" + (typeof source === "string" ? utf8(source).byteLength : source.byteLength) + "\n";
    return new Request(incoming, { url, method: req.method, headers: flat, source, cf: req.cf });
  };
  B.requestFlat = requestFlatHeaders;
  B.hasFlat = hasFlat;
  B.adoptResponse = (res, url) => {
    if (!(res instanceof Response)) throw new TypeError(`the fetch handler returned ${res === undefined ? "undefined" : B.inspect(res, 1, new Set())}, not a Response`);
    if (res.webSocket) return new Response(null, { status: 101, statusText: res.statusText, headers: res.headers, webSocket: res.webSocket });
    const out = makeResponse(res.status, res.statusText, responseFlatHeaders(res), takeBody(res));
    if (res[ctBodyKey] !== undefined) { out[ctBodyKey] = res[ctBodyKey]; if (res[bodyEndPromise]) out[bodyEndPromise] = res[bodyEndPromise]; }
    return markFetched(out, url, false);
  };
  // rehomeResponse is adoptResponse for a response no script has seen (a
  // container's, passed on by berth's Container class): the same object,
  // now answering for url.
  B.rehomeResponse = (res, url) => markFetched(res, url, false);
  B.hostStream = hostStream;

  // ---- the Worker: module and dispatch ----------------------------------------------------------------------------
  let mod = null, env = {};
  const entrypointMark = Symbol.for("berth.WorkerEntrypoint");
  // __berth_init checks the default export and returns the names of the
  // named WorkerEntrypoint classes, as JSON.
  g.__berth_init = (envJSON) => {
    mod = g.__berthWorker;
    env = JSON.parse(envJSON);
    const h = mod && mod.default;
    if (!h) throw new TypeError("the Worker script has no default export");
    if (typeof h === "function" && typeof h.prototype?.fetch !== "function") throw new TypeError("the default export class has no fetch method");
    if (typeof h === "object" && typeof h.fetch !== "function") throw new TypeError("the default export has no fetch handler");
    const named = Object.keys(mod).filter((k) => k !== "default" && typeof mod[k] === "function" && mod[k][entrypointMark] === true);
    const classes = Object.keys(mod).filter((k) => k !== "default" && typeof mod[k] === "function");
    B.module = mod;
    B.env = env;
    if (B.initObjects) B.initObjects(env);
    return JSON.stringify({ entrypoints: named, classes });
  };
  const errText = (e) => (e instanceof Error ? `${e.name}: ${e.message}` : "Uncaught " + B.inspect(e, 1, new Set()));
  const errStack = (e) => (e instanceof Error && e.stack ? e.stack : "");

  // respond sends res for request id. Bodies that are bytes, or a host body
  // nobody read, go to Go in one call (final also ends the request there);
  // a JS stream returns a promise that settles when the last chunk went out.
  function respond(id, res, final) {
    if (!(res instanceof Response)) throw new TypeError(`the fetch handler returned ${res === undefined ? "undefined" : B.inspect(res, 1, new Set())}, not a Response`);
    const b = res[bodyKey];
    const src = b.used ? null : b.source;
    const headers = responseFlatHeaders(res);
    if (res.webSocket) return host("respond", id, 101, res.statusText, headers, null, final, B.wsTransfer(res.webSocket, B.tag));
    if (src === null) return host("respond", id, res.status, res.statusText, headers, null, final);
    if (typeof src === "string") return host("respond", id, res.status, res.statusText, headers, src, final);
    if (src instanceof Uint8Array) return host("respond", id, res.status, res.statusText, headers, toHostBuffer(src), final);
    b.used = true;
    const handle = passThroughHandle(src);
    if (handle) return host("respond", id, res.status, res.statusText, headers, handle, final);
    // A stream: send the head, then each chunk as the client takes it.
    host("respond", id, res.status, res.statusText, headers, undefined, false);
    return pumpResponse(id, res.body.getReader());
  }
  async function pumpResponse(id, reader) {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const chunk = typeof value === "string" ? utf8(value) : toU8(value);
        if (chunk.byteLength) await hostAsync("write", id, toHostBuffer(chunk));
      }
      host("end", id, null);
    } catch (e) {
      host("end", id, errText(e));
      throw e;
    }
  }
  // pumpSink feeds a JS stream to the Go sink id (an outbound request body).
  async function pumpSink(id, stream) {
    try {
      const reader = stream.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const chunk = typeof value === "string" ? utf8(value) : toU8(value);
        if (chunk.byteLength) await hostAsync("sinkWrite", id, toHostBuffer(chunk));
      }
      host("sinkClose", id, null);
    } catch (e) {
      host("sinkClose", id, errText(e));
    }
  }
  B.pumpSink = pumpSink;

  const fail = (id, e, state) => host("fail", id, errText(e), errStack(e), !!(state && state.passThrough));
  const end = (id) => host("done", id);
  // complete answers request id with res, then waits for ctx.waitUntil work.
  function complete(id, res, state) {
    let pending;
    try {
      pending = respond(id, res, !state.waits);
    } catch (e) {
      fail(id, e, state);
    }
    if (pending) { pending.then(() => afterResponse(id, state), (e) => { fail(id, e, state); afterResponse(id, state); }); return; }
    if (!state.waits) return;
    afterResponse(id, state);
  }
  function afterResponse(id, state) {
    if (!state.waits) { end(id); return; }
    Promise.all(state.waits).finally(() => end(id));
  }

  // props is the entrypoint's ctx.props as JSON, "" for none.
  g.__berth_dispatch = (id, tag, entrypoint, method, url, headers, bodyHandle, canonical, props) => {
    B.entered(tag); // Go charges CPU time to the request already
    handleFetch(id, tag, method, url, headers, bodyHandle, canonical, (req, ctx) => {
      if (props) ctx.props = Object.freeze(JSON.parse(props));
      const h = entrypoint ? mod[entrypoint] : mod.default;
      if (typeof h === "function") {
        const instance = new h(ctx, env);
        if (typeof instance.fetch !== "function") throw new TypeError(`the entrypoint ${entrypoint || "default"} has no fetch method`);
        return instance.fetch(req);
      }
      return h.fetch(req, env, ctx);
    });
  };
  // handleFetch builds the incoming Request of request id, runs call(req,
  // ctx) and sends its Response (or failure) to Go.
  function handleFetch(id, tag, method, url, headers, bodyHandle, canonical, call) {
    B.tag = tag;
    const state = { waits: null, passThrough: false };
    try {
      if (!canonical) url = new URL(url).href;
      const req = new Request(incoming, { url, method, headers, source: bodyHandle ? { hostBody: bodyHandle } : null });
      const ctx = {
        waitUntil(p) { (state.waits ||= []).push(Promise.resolve(p).catch((e) => B.log("error")("Uncaught (in waitUntil)", e))); },
        passThroughOnException() { state.passThrough = true; },
        props: {},
        exports: B.exports || {},
      };
      const result = call(req, ctx);
      if (result !== null && typeof result === "object" && !(result instanceof Response) && typeof result.then === "function")
        result.then((res) => complete(id, res, state), (e) => { fail(id, e, state); afterResponse(id, state); });
      else complete(id, result, state);
    } catch (e) {
      fail(id, e, state);
      afterResponse(id, state);
    }
  }
  B.handleFetch = handleFetch;
  g.__berth_tag = () => B.tag;
})(globalThis);
