"use strict";
// A fast path for the URL parser. whatwg-url's state machine runs per code
// point and costs several microseconds per character in an interpreter; most
// URLs a Worker sees are plain absolute http(s) URLs for which the WHATWG
// parser changes nothing but the host's case, a default port and the path
// segments. fastParse returns the URL record for exactly those inputs and
// null for anything else, which then goes through the full parser. Every
// character class below is a subset of what the parser keeps unchanged in
// that component, so the record equals the full parser's.

const defaultPorts = { http: 80, https: 443, ws: 80, wss: 443 };

// scheme, host, port digits, path, query, fragment. Host labels: ASCII
// letters, digits and inner hyphens (domain-to-ASCII only lowercases them).
// Path: no "\", "?", "#", "^", "`", "{", "}", "|", "[", "]", quotes, "<", ">",
// controls, spaces or non-ASCII (those are percent-encoded or special).
// Query: additionally no "'" (the special-query percent-encode set).
const simple = /^(https?|wss?):\/\/([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::([0-9]{1,5}))?((?:\/[A-Za-z0-9\-._~!$&'()*+,;=:@%]*)*)(?:\?([A-Za-z0-9\-._~!$&()*+,;=:@\/?%]*))?(?:#([A-Za-z0-9\-._~!$&'()*+,;=:@\/?%]*))?$/;

// A host whose last label is numeric (or 0x…) goes through the IPv4 parser,
// and "xn--" labels through Punycode validation; only the canonical dotted
// decimal form is kept here.
const numericLast = /(?:^|\.)(?:[0-9]+|0[xX][0-9A-Fa-f]*)$/;
const canonicalIPv4 = /^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/;
const punycodeLabel = /(?:^|\.)xn--/i;
// ".", "..", and their percent-encoded spellings are dot segments.
const dotSegment = /^(?:\.|%2e){1,2}$/i;

function fastParse(input) {
  if (typeof input !== "string" || input.length > 2048) {
    return null;
  }
  const m = simple.exec(input);
  if (m === null) {
    return null;
  }
  const scheme = m[1];
  let host = m[2];
  if (numericLast.test(host)) {
    if (!canonicalIPv4.test(host)) {
      return null;
    }
  } else if (punycodeLabel.test(host)) {
    return null;
  } else {
    host = host.toLowerCase();
  }
  let port = null;
  if (m[3] !== undefined) {
    port = Number(m[3]);
    if (port > 65535) {
      return null;
    }
    if (port === defaultPorts[scheme]) {
      port = null;
    }
  }
  const rawPath = m[4];
  let path;
  if (rawPath === "") {
    path = [""];
  } else {
    path = rawPath.slice(1).split("/");
    for (let i = 0; i < path.length; i++) {
      const seg = path[i];
      if (seg.length <= 6 && dotSegment.test(seg)) {
        return null;
      }
    }
  }
  return {
    scheme,
    username: "",
    password: "",
    host,
    port,
    path,
    query: m[5] === undefined ? null : m[5],
    fragment: m[6] === undefined ? null : m[6]
  };
}

// Workers parse the same few URLs over and over (each request's URL, the
// origins they call), and even the fast path costs microseconds in an
// interpreter: remember the records (and the inputs declined) of recent
// inputs. Records are mutable (setters), so each caller gets its own copy.
const recent = new Map();
const recentMax = 512;

function cachedParse(input) {
  if (typeof input !== "string") {
    return null;
  }
  let rec = recent.get(input);
  if (rec === undefined) {
    rec = fastParse(input);
    if (recent.size >= recentMax) {
      recent.clear();
    }
    recent.set(input, rec);
  }
  return rec === null ? null : { ...rec, path: rec.path.slice() };
}

module.exports = { fastParse: cachedParse };

// fastParseUrlencoded is the application/x-www-form-urlencoded parser for
// inputs without percent-escapes: for a well-formed string, encoding to
// UTF-8 and decoding again is the identity, so only "&", "=" and "+" matter.
// It returns null for anything else.
function fastParseUrlencoded(input) {
  if (typeof input !== "string" || input.includes("%") || !input.isWellFormed()) {
    return null;
  }
  const output = [];
  if (input === "") {
    return output;
  }
  for (let seq of input.split("&")) {
    if (seq === "") {
      continue;
    }
    if (seq.includes("+")) {
      seq = seq.replaceAll("+", " ");
    }
    const eq = seq.indexOf("=");
    output.push(eq >= 0 ? [seq.slice(0, eq), seq.slice(eq + 1)] : [seq, ""]);
  }
  return output;
}

module.exports.fastParseUrlencoded = fastParseUrlencoded;
