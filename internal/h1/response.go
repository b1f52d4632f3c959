package h1

// ParseResponse parses the response header block at the start of buf into r;
// method is the request's method, which decides whether a body follows.
// n, ErrIncomplete, ErrHeaderTooLarge and slice lifetimes are as for
// ParseRequest; errors wrap ErrMalformed (a proxy answers 502).
//
// Framing follows RFC 9112 §6.3 with a proxy's strictness:
//   - responses to HEAD, 1xx, 204 and 304 have no body (Bodyless,
//     ContentLength 0), and neither does a 2xx to CONNECT, after which the
//     connection is a tunnel;
//   - Transfer-Encoding whose last coding is chunked gives Chunked;
//     one without chunked gives UntilClose; chunked repeated or not last,
//     several Transfer-Encoding fields, or Transfer-Encoding in HTTP/1.0 are
//     malformed;
//   - Transfer-Encoding with Content-Length is malformed, although RFC 9112
//     lets Transfer-Encoding win: a backend that sends both is broken or
//     compromised, and forwarding it invites response splitting;
//   - Content-Length rules are those of ParseRequest;
//   - with neither field the body runs until close (ContentLength -1).
//
// The framing fields are validated even for bodyless responses.
// KeepAlive is false whenever the body runs until close. Unlike a request, a
// response may not be preceded by empty lines: a stray CRLF after the previous
// body means the backend framed that body wrongly.
func ParseResponse(buf []byte, method []byte, r *Response) (n int, err error) {
	*r = Response{Headers: r.Headers[:0]}
	end, err := lineEnd(buf, 0)
	if err != nil {
		return 0, err
	}
	if end < 0 {
		return 0, checkVersionPrefix(buf)
	}
	if err := r.parseStatusLine(buf[:end-1]); err != nil {
		return 0, err
	}
	var f fields
	r.Headers, n, err = parseFields(buf, end+1, r.Headers, &f)
	if err != nil {
		return 0, err
	}
	if err := r.frame(method, &f); err != nil {
		return 0, err
	}
	return n, nil
}

// Header returns the value of the first field named name (ASCII
// case-insensitive), or nil if there is none.
func (r *Response) Header(name string) []byte { return headerValue(r.Headers, name) }

// checkVersionPrefix rejects at once a partial status-line that cannot start
// with "HTTP/1."; otherwise the line is just incomplete.
func checkVersionPrefix(b []byte) error {
	const p = "HTTP/1."
	if len(b) > len(p) {
		b = b[:len(p)]
	}
	if string(b) != p[:len(b)] {
		return malformed("invalid status-line")
	}
	return ErrIncomplete
}

// parseStatusLine parses HTTP-version SP 3DIGIT SP reason-phrase (RFC 9112
// §4). Leniency: the SP before an empty reason may be missing
// ("HTTP/1.1 200"), as real servers send that and it is unambiguous.
func (r *Response) parseStatusLine(line []byte) error {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return malformed("invalid status-line")
	}
	r.Minor = int(line[7] - '0')
	s := 0
	for _, c := range line[9:12] {
		if !isDigit(c) {
			return malformed("invalid status code")
		}
		s = s*10 + int(c-'0')
	}
	if s < 100 || s > 599 {
		return malformed("status code out of range")
	}
	r.Status = s
	if len(line) == 12 {
		return nil
	}
	if line[12] != ' ' {
		return malformed("invalid status code")
	}
	for _, c := range line[13:] {
		if !isFieldByte(c) {
			return malformed("invalid byte in reason phrase")
		}
	}
	r.Reason = line[13:]
	return nil
}

// frame decides the body length (RFC 9112 §6.3) and connection handling.
func (r *Response) frame(method []byte, f *fields) error {
	if err := f.checkFraming(r.Minor); err != nil {
		return err
	}
	var te teKind
	if f.teN == 1 {
		switch te = classifyTE(f.te); te {
		case teInvalid:
			return malformed("invalid Transfer-Encoding")
		case teChunkedInside, teChunkedTwice:
			return malformed("chunked is not the only final transfer coding")
		}
	}
	r.Coded = te == teChunkedLast || te == teNoChunked
	r.KeepAlive = keepAlive(r.Minor, f.conn)
	if r.Status == 101 && f.conn&connUpgrade != 0 && len(f.upgrade) > 0 {
		r.Upgrade = f.upgrade
	}
	switch {
	case string(method) == "HEAD" || r.Status < 200 || r.Status == 204 || r.Status == 304,
		string(method) == "CONNECT" && r.Status < 300:
		r.Bodyless = true
	case te == teChunked || te == teChunkedLast:
		r.Chunked, r.ContentLength = true, -1
	case f.clN > 0:
		r.ContentLength = f.cl
	default: // Transfer-Encoding without chunked, or no framing field
		r.UntilClose, r.ContentLength, r.KeepAlive = true, -1, false
	}
	return nil
}
