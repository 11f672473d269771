package worker

import "strings"

// isCanonicalURL reports whether u is already in the form the WHATWG URL
// parser serializes it to, so the incoming Request can carry it as its url
// without parsing it in JavaScript. It accepts only plain http(s) URLs: a
// lowercase ASCII host (no Punycode labels, numeric last label only as
// canonical dotted-decimal IPv4), a non-default port without leading zeros,
// and a path and query made of characters the parser keeps as they are, with
// no dot segments. Anything else goes through the parser (js/fast-url.js
// applies the same rules on the JavaScript side).
func isCanonicalURL(u string) bool {
	var rest string
	var defPort string
	switch {
	case strings.HasPrefix(u, "http://"):
		rest, defPort = u[len("http://"):], "80"
	case strings.HasPrefix(u, "https://"):
		rest, defPort = u[len("https://"):], "443"
	default:
		return false
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 || rest[end] != '/' {
		return false // "http://host" serializes with a "/"
	}
	authority, pathQuery := rest[:end], rest[end:]
	host, port, hasPort := strings.Cut(authority, ":")
	if !canonicalHost(host) {
		return false
	}
	if hasPort && !canonicalPort(port, defPort) {
		return false
	}
	path, query, hasQuery := strings.Cut(pathQuery, "?")
	if strings.IndexByte(path, '#') >= 0 || (hasQuery && strings.IndexByte(query, '#') >= 0) {
		return false
	}
	for _, seg := range strings.Split(path[1:], "/") {
		if isDotSegment(seg) {
			return false
		}
		for i := 0; i < len(seg); i++ {
			if !pathByte(seg[i]) {
				return false
			}
		}
	}
	for i := 0; i < len(query); i++ {
		if c := query[i]; c == '\'' || !queryByte(c) {
			return false
		}
	}
	return true
}

func canonicalHost(h string) bool {
	if h == "" {
		return false
	}
	labels := strings.Split(h, ".")
	last := labels[len(labels)-1]
	if last == "" {
		return false
	}
	if isNumericLabel(last) {
		// The IPv4 parser runs; only its own output form is canonical.
		if len(labels) != 4 {
			return false
		}
		for _, l := range labels {
			if !canonicalOctet(l) {
				return false
			}
		}
		return true
	}
	for _, l := range labels {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' || strings.HasPrefix(l, "xn--") {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func isNumericLabel(l string) bool {
	if strings.HasPrefix(l, "0x") || strings.HasPrefix(l, "0X") {
		return true // hexadecimal, or "0x" alone
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

func canonicalOctet(l string) bool {
	if l == "" || len(l) > 3 || (len(l) > 1 && l[0] == '0') {
		return false
	}
	n := 0
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
		n = n*10 + int(l[i]-'0')
	}
	return n <= 255
}

func canonicalPort(p, def string) bool {
	if p == "" || p == def || len(p) > 5 || (len(p) > 1 && p[0] == '0') {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n <= 65535
}

func isDotSegment(s string) bool {
	switch strings.ToLower(s) {
	case ".", "..", "%2e", ".%2e", "%2e.", "%2e%2e":
		return true
	}
	return false
}

// pathByte: unreserved, sub-delims, ":", "@" and "%" — bytes the parser
// never percent-encodes in a special URL's path.
func pathByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@%", c) >= 0
}

// queryByte: the path bytes plus "/" and "?"; the caller excludes "'".
func queryByte(c byte) bool { return pathByte(c) || c == '/' || c == '?' }
