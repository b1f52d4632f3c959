package h1

import (
	"bytes"
	"math"
)

// MaxHeaders is the most field lines a header block may hold; one more makes
// ParseRequest and ParseResponse return ErrHeaderTooLarge.
const MaxHeaders = 128

// Connection option bits.
const (
	connClose = 1 << iota
	connKeepAlive
	connUpgrade
)

// fields is what the framing decisions need from a header block, gathered in
// the same pass that splits the lines. It lives on the caller's stack.
type fields struct {
	host      []byte // first Host value
	hostN     int    // number of Host fields
	cl        int64  // the Content-Length, identical across every field and list element
	clN       int    // number of Content-Length fields
	te        []byte // the Transfer-Encoding value (meaningful when teN == 1)
	teN       int    // number of Transfer-Encoding fields
	conn      uint8  // connClose | connKeepAlive | connUpgrade
	upgrade   []byte // first Upgrade value
	expect100 bool
}

// lineEnd returns the index of the LF ending the line that starts at buf[i],
// -1 if buf holds no LF yet, or an error for an LF not preceded by CR.
func lineEnd(buf []byte, i int) (int, error) {
	j := bytes.IndexByte(buf[i:], '\n')
	if j < 0 {
		return -1, nil
	}
	if j == 0 || buf[i+j-1] != '\r' {
		return 0, malformed("bare LF line ending")
	}
	return i + j, nil
}

// parseFields parses field lines from buf[i:] up to and including the empty
// line, appending them to hs, and returns the offset just past the block. It
// returns ErrIncomplete when the block does not end within buf, but rejects a
// bad complete line (or too many of them) at once, so a client cannot keep a
// doomed request open by trickling bytes.
func parseFields(buf []byte, i int, hs []Header, f *fields) ([]Header, int, error) {
	for {
		end, err := lineEnd(buf, i)
		if err != nil {
			return hs, 0, err
		}
		if end < 0 {
			return hs, 0, ErrIncomplete
		}
		line := buf[i : end-1]
		i = end + 1
		if len(line) == 0 {
			return hs, i, nil
		}
		if len(hs) == MaxHeaders {
			return hs, 0, ErrHeaderTooLarge
		}
		name, value, err := parseField(line)
		if err != nil {
			return hs, 0, err
		}
		hs = append(hs, Header{Name: name, Value: value})
		if err := f.note(name, value); err != nil {
			return hs, 0, err
		}
	}
}

// note records the fields that decide framing and connection handling.
func (f *fields) note(name, value []byte) error {
	switch len(name) {
	case 4:
		if equalFold(name, "host") {
			f.hostN++
			if f.hostN == 1 {
				f.host = value
			}
		}
	case 6:
		if equalFold(name, "expect") && equalFold(value, "100-continue") {
			f.expect100 = true
		}
	case 7:
		if equalFold(name, "upgrade") && f.upgrade == nil {
			f.upgrade = value
		}
	case 10:
		if equalFold(name, "connection") {
			return f.noteConnection(value)
		}
	case 14:
		if equalFold(name, "content-length") {
			return f.noteContentLength(value)
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			f.teN++
			f.te = value
		}
	}
	return nil
}

// noteConnection reads a Connection list (RFC 9110 §7.6.1): tokens, empty
// elements ignored.
func (f *fields) noteConnection(v []byte) error {
	for i := 0; i <= len(v); {
		var e []byte
		e, i = listElem(v, i)
		if len(e) == 0 {
			continue
		}
		if skipToken(e, 0) != len(e) {
			return malformed("invalid Connection option")
		}
		switch {
		case equalFold(e, "close"):
			f.conn |= connClose
		case equalFold(e, "keep-alive"):
			f.conn |= connKeepAlive
		case equalFold(e, "upgrade"):
			f.conn |= connUpgrade
		}
	}
	return nil
}

// noteContentLength reads one Content-Length field (RFC 9110 §8.6, RFC 9112
// §6.3 item 5). Each list element must be 1*DIGIT fitting in an int64, and
// every element of every Content-Length field must have the same value;
// anything else (a sign, inner spaces, hex, an empty element, "5, 6") is
// malformed.
func (f *fields) noteContentLength(v []byte) error {
	for i := 0; i <= len(v); {
		var e []byte
		e, i = listElem(v, i)
		n, ok := parseDecimal(e)
		if !ok {
			return malformed("invalid Content-Length")
		}
		if f.clN > 0 && n != f.cl {
			return malformed("conflicting Content-Length values")
		}
		f.cl = n
		f.clN++
	}
	return nil
}

// parseDecimal parses 1*DIGIT into a non-negative int64.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// teKind classifies a Transfer-Encoding value.
type teKind uint8

const (
	teInvalid       teKind = iota // not a transfer-coding list
	teChunked                     // exactly "chunked"
	teChunkedLast                 // codings, then chunked once, last
	teNoChunked                   // a valid list without chunked
	teChunkedInside               // chunked, but not last
	teChunkedTwice                // chunked more than once
)

// classifyTE parses a Transfer-Encoding value as 1#transfer-coding (RFC 9112
// §6.1, RFC 9110 §10.1.4): token *( OWS ";" OWS token BWS "=" BWS ( token /
// quoted-string ) ), elements separated by OWS "," OWS. Unlike the general
// list rule, an empty element is invalid here: framing fields get no leniency.
// "chunked" takes no parameters, so "chunked;x=y" is invalid too.
func classifyTE(v []byte) teKind {
	n, chunked, last := 0, 0, false
	for i := 0; ; {
		i = skipWS(v, i)
		s := i
		if i = skipToken(v, i); i == s {
			return teInvalid
		}
		isChunked := equalFold(v[s:i], "chunked")
		j, ok := skipParams(v, i)
		if !ok || (isChunked && j != i) {
			return teInvalid
		}
		i = j
		n++
		last = isChunked
		if isChunked {
			chunked++
		}
		i = skipWS(v, i)
		if i == len(v) {
			break
		}
		if v[i] != ',' {
			return teInvalid
		}
		i++
	}
	switch {
	case chunked == 0:
		return teNoChunked
	case chunked > 1:
		return teChunkedTwice
	case !last:
		return teChunkedInside
	case n == 1:
		return teChunked
	}
	return teChunkedLast
}

// skipParams skips *( OWS ";" OWS token BWS "=" BWS ( token / quoted-string ) )
// after a coding name ending at v[i-1]; it returns the index after the last
// parameter, which is i itself when there is none.
func skipParams(v []byte, i int) (int, bool) {
	for {
		j := skipWS(v, i)
		if j == len(v) || v[j] != ';' {
			return i, true
		}
		j = skipWS(v, j+1)
		s := j
		if j = skipToken(v, j); j == s {
			return 0, false
		}
		if j = skipWS(v, j); j == len(v) || v[j] != '=' {
			return 0, false
		}
		j = skipWS(v, j+1)
		if j < len(v) && v[j] == '"' {
			if j = skipQuoted(v, j); j < 0 {
				return 0, false
			}
		} else {
			s = j
			if j = skipToken(v, j); j == s {
				return 0, false
			}
		}
		i = j
	}
}

// keepAlive applies RFC 9112 §9.3: HTTP/1.1 persists unless "close";
// HTTP/1.0 only with "keep-alive" and without "close".
func keepAlive(minor int, conn uint8) bool {
	if conn&connClose != 0 {
		return false
	}
	return minor == 1 || conn&connKeepAlive != 0
}

// headerValue is the lookup shared by Request.Header and Response.Header.
func headerValue(hs []Header, name string) []byte {
	for i := range hs {
		if equalFold(hs[i].Name, name) {
			return hs[i].Value
		}
	}
	return nil
}

// checkFraming applies the framing rules requests and responses share (RFC
// 9112 §6.1): never both Transfer-Encoding and Content-Length (the smuggling
// shape), no Transfer-Encoding in HTTP/1.0, at most one Transfer-Encoding field.
func (f *fields) checkFraming(minor int) error {
	switch {
	case f.teN > 0 && f.clN > 0:
		return malformed("both Transfer-Encoding and Content-Length")
	case f.teN > 0 && minor == 0:
		return malformed("Transfer-Encoding in HTTP/1.0")
	case f.teN > 1:
		return malformed("several Transfer-Encoding fields")
	}
	return nil
}
