package h1

import "fmt"

// ParseRequest parses the request header block at the start of buf into r.
//
// On success n is the length of the block, from buf[0] through the CRLF CRLF
// that ends it (including any empty lines skipped before the request-line,
// RFC 9112 §2.2), and every slice in r points into buf. r.Headers keeps its
// capacity across calls, so a reused Request parses without allocating.
//
// If buf does not yet hold the whole block, ParseRequest returns
// ErrIncomplete: append more bytes and call again. It checks every complete
// line as it goes, so a block that is already invalid fails at once with an
// error wrapping ErrMalformed instead of waiting for more bytes; more than
// MaxHeaders field lines give ErrHeaderTooLarge. Callers bound the total size.
//
// Framing follows RFC 9112 §6 and refuses whatever two parsers could frame
// differently: Transfer-Encoding together with Content-Length, several
// Transfer-Encoding fields, Transfer-Encoding in HTTP/1.0, a coding list in
// which chunked is missing, repeated or not last (400 per §6.3 item 4) are
// all ErrMalformed. A valid list ending in chunked after other codings
// ("gzip, chunked") is ErrUnsupportedTransferCoding (501): we only decode
// chunked. Content-Length fields must all carry the same decimal value.
//
// An absolute-form or CONNECT target's authority becomes r.Host in place of
// the Host field (RFC 9112 §3.2.2), which must still be present and valid in
// HTTP/1.1; a proxy sends r.Host upstream so that the backend cannot route on
// a different host than the proxy did. On error r's contents are unspecified,
// but r.Headers keeps its capacity.
func ParseRequest(buf []byte, r *Request) (n int, err error) {
	*r = Request{Headers: r.Headers[:0]}
	i := 0
	for len(buf)-i >= 2 && buf[i] == '\r' && buf[i+1] == '\n' {
		i += 2
	}
	end, err := lineEnd(buf, i)
	if err != nil {
		return 0, err
	}
	if end < 0 {
		return 0, checkMethodPrefix(buf[i:])
	}
	if err := r.parseRequestLine(buf[i : end-1]); err != nil {
		return 0, err
	}
	var f fields
	r.Headers, n, err = parseFields(buf, end+1, r.Headers, &f)
	if err != nil {
		return 0, err
	}
	if err := r.frame(&f); err != nil {
		return 0, err
	}
	return n, nil
}

// Header returns the value of the first field named name (ASCII
// case-insensitive), or nil if there is none.
func (r *Request) Header(name string) []byte { return headerValue(r.Headers, name) }

// checkMethodPrefix rejects at once a partial request-line whose start cannot
// be a method (a TLS ClientHello on a plain port, binary junk); otherwise the
// line is just incomplete.
func checkMethodPrefix(b []byte) error {
	if len(b) == 1 && b[0] == '\r' {
		return ErrIncomplete // maybe an empty line
	}
	for k, c := range b {
		if c == ' ' && k > 0 {
			break
		}
		if !isTchar(c) {
			return malformed("invalid method")
		}
	}
	return ErrIncomplete
}

// parseRequestLine parses method SP request-target SP HTTP-version (RFC 9112
// §3): exactly one SP between the parts, the method a token, the target
// visible ASCII without '#' (a fragment is not part of any request-target
// form), the version "HTTP/1.1" or "HTTP/1.0" exactly.
func (r *Request) parseRequestLine(line []byte) error {
	m := skipToken(line, 0)
	if m == 0 || m == len(line) || line[m] != ' ' {
		return malformed("invalid method")
	}
	r.Method = line[:m]
	rest := line[m+1:]
	t := 0
	for t < len(rest) && rest[t] > ' ' && rest[t] < 0x7f && rest[t] != '#' {
		t++
	}
	switch {
	case t == len(rest):
		return malformed("missing HTTP version")
	case rest[t] == '#':
		return malformed("fragment in request-target")
	case rest[t] != ' ':
		return malformed("invalid byte in request-target")
	case t == 0:
		return malformed("empty request-target")
	}
	v := rest[t+1:]
	if len(v) != 8 || string(v[:7]) != "HTTP/1." || (v[7] != '0' && v[7] != '1') {
		return malformed("unsupported HTTP version")
	}
	r.Minor = int(v[7] - '0')
	r.Target = rest[:t]
	return r.parseTarget()
}

// parseTarget checks the request-target form against the method (RFC 9112
// §3.2) and fills Path, Query and, for absolute-form and authority-form, Host.
func (r *Request) parseTarget() error {
	tg := r.Target
	switch {
	case string(r.Method) == "CONNECT":
		// authority-form only, and a CONNECT authority names a port. Like an
		// absolute-form authority it is the target, so it overrides Host.
		if !validAuthority(tg, true, true) {
			return malformed("CONNECT needs an authority-form target")
		}
		r.Host = tg
	case tg[0] == '/':
		r.Path, r.Query = splitQuery(tg)
	case len(tg) == 1 && tg[0] == '*':
		if string(r.Method) != "OPTIONS" {
			return malformed("asterisk-form target without OPTIONS")
		}
		r.Path = tg // forwarded as is: "OPTIONS * HTTP/1.1"
	default:
		return r.parseAbsolute()
	}
	return nil
}

// parseAbsolute handles absolute-form "http://authority/path?query" (scheme
// case-insensitive, http or https only). The authority must have a host and
// no userinfo; it becomes r.Host, overriding the Host field (RFC 9112 §3.2.2).
func (r *Request) parseAbsolute() error {
	tg := r.Target
	var slash int // index of a '/' in the target to stand in for an empty path
	switch {
	case hasPrefixFold(tg, "http://"):
		slash = len("http:")
	case hasPrefixFold(tg, "https://"):
		slash = len("https:")
	default:
		return malformed("invalid request-target")
	}
	rest := tg[slash+2:]
	a := 0
	for a < len(rest) && rest[a] != '/' && rest[a] != '?' {
		a++
	}
	if !validAuthority(rest[:a], true, false) {
		return malformed("invalid authority in absolute-form target")
	}
	r.Host = rest[:a]
	r.Path, r.Query = splitQuery(rest[a:])
	if len(r.Path) == 0 {
		// "/" from the scheme's "//", so even this stays inside buf.
		r.Path = tg[slash : slash+1]
	}
	return nil
}

// splitQuery splits "path?query"; query is nil without a '?'.
func splitQuery(b []byte) (path, query []byte) {
	for i, c := range b {
		if c == '?' {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

// frame applies the Host rules (RFC 9112 §3.2) and decides the body length
// (RFC 9112 §6.3) and connection handling.
func (r *Request) frame(f *fields) error {
	switch {
	case f.hostN > 1:
		return malformed("several Host fields")
	case f.hostN == 0 && r.Minor == 1:
		return malformed("missing Host field")
	case f.hostN == 1:
		if !validAuthority(f.host, false, false) {
			return malformed("invalid Host field")
		}
		if r.Host == nil {
			r.Host = f.host
		}
	}
	if err := f.checkFraming(r.Minor); err != nil {
		return err
	}
	switch {
	case f.teN == 1:
		switch classifyTE(f.te) {
		case teChunked:
			r.Chunked, r.ContentLength = true, -1
		case teChunkedLast:
			return fmt.Errorf("%w: %.64q", ErrUnsupportedTransferCoding, f.te)
		case teInvalid:
			return malformed("invalid Transfer-Encoding")
		default:
			return malformed("Transfer-Encoding without chunked as its only final coding")
		}
	case f.clN > 0:
		r.ContentLength = f.cl
	}
	r.KeepAlive = keepAlive(r.Minor, f.conn)
	// Upgrade and Expect are HTTP/1.1 mechanisms; an HTTP/1.0 request's are
	// ignored (RFC 9110 §7.8 and §10.1.1).
	if r.Minor == 1 && f.conn&connUpgrade != 0 && len(f.upgrade) > 0 {
		r.Upgrade = f.upgrade
	}
	r.Expect100 = r.Minor == 1 && f.expect100
	return nil
}
