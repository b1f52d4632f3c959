package h1

import (
	"encoding/binary"
	"fmt"
)

// Character classes are 128-bit sets split into two constant masks (bytes
// 0-63 and 64-127), so the package keeps no mutable lookup tables and a class
// test is a shift and an AND. Bytes >= 0x80 belong to none of these classes.
const (
	digitMask = (1<<10 - 1) << '0'
	upperMask = (1<<26 - 1) << ('A' - 64)
	lowerMask = (1<<26 - 1) << ('a' - 64)

	// tchar (RFC 9110 §5.6.2): "!#$%&'*+-.^_`|~", DIGIT and ALPHA.
	tcharLo uint64 = digitMask | 1<<'!' | 1<<'#' | 1<<'$' | 1<<'%' | 1<<'&' |
		1<<'\'' | 1<<'*' | 1<<'+' | 1<<'-' | 1<<'.'
	tcharHi uint64 = upperMask | lowerMask | 1<<('^'-64) | 1<<('_'-64) |
		1<<('`'-64) | 1<<('|'-64) | 1<<('~'-64)

	// reg-name bytes of RFC 3986 other than pct-encoded: unreserved and sub-delims.
	regLo uint64 = digitMask | 1<<'-' | 1<<'.' | 1<<'!' | 1<<'$' | 1<<'&' |
		1<<'\'' | 1<<'(' | 1<<')' | 1<<'*' | 1<<'+' | 1<<',' | 1<<';' | 1<<'='
	regHi uint64 = upperMask | lowerMask | 1<<('_'-64) | 1<<('~'-64)
)

func inSet(c byte, lo, hi uint64) bool {
	if c < 64 {
		return lo>>c&1 != 0
	}
	if c < 128 {
		return hi>>(c-64)&1 != 0
	}
	return false
}

// tcharTable marks the tchar bytes 0-127 with '1', 32 a row; it is the
// hottest class (every field name), and a load beats inSet's branches.
const tcharTable = "" +
	"00000000000000000000000000000000" + // 0x00-0x1f
	"01011111001101101111111111000000" + // 0x20-0x3f: ! #$%&' *+ -. 0-9
	"01111111111111111111111111100011" + // 0x40-0x5f: A-Z ^_
	"11111111111111111111111111101010" //   0x60-0x7f: ` a-z | ~

func isTchar(c byte) bool { return c < 128 && tcharTable[c] == '1' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isWS(c byte) bool { return c == ' ' || c == '\t' }

// unhex returns the value of a hex digit, or -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// isFieldByte reports whether c may appear in a field value or a reason
// phrase: HTAB, SP, VCHAR and obs-text (RFC 9110 §5.5). CR, LF, NUL, the other
// controls and DEL may not.
func isFieldByte(c byte) bool { return c == '\t' || (c >= 0x20 && c != 0x7f) }

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold reports whether b equals s under ASCII case folding.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, s string) bool {
	return len(b) >= len(s) && equalFold(b[:len(s)], s)
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && isWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// skipToken returns the index after the token starting at b[i:]; it equals i
// when there is none.
func skipToken(b []byte, i int) int {
	for i < len(b) && isTchar(b[i]) {
		i++
	}
	return i
}

// skipQuoted returns the index after the quoted-string (RFC 9110 §5.6.4)
// starting at b[i] == '"', or -1 if it is not one.
func skipQuoted(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i == len(b) || !isFieldByte(b[i]) {
				return -1
			}
		case !isFieldByte(c):
			return -1
		}
	}
	return -1
}

// listElem returns the OWS-trimmed element of a comma-separated list that
// starts at v[i:], and the index just past its comma (len(v)+1 after the last).
func listElem(v []byte, i int) (elem []byte, next int) {
	j := i
	for j < len(v) && v[j] != ',' {
		j++
	}
	return trimOWS(v[i:j]), j + 1
}

// malformed builds an error wrapping ErrMalformed. It is only called on the
// error path, so its allocation never touches a request that parses.
func malformed(what string) error { return fmt.Errorf("%w: %s", ErrMalformed, what) }

// parseField splits a field line (without its CRLF) into name and
// OWS-trimmed value, enforcing RFC 9112 §5: the name is a non-empty token
// followed directly by ':' (whitespace before the colon is an error, §5.1), a
// line that starts with whitespace is obs-fold (rejected, §5.2), and the
// value holds only field bytes.
func parseField(line []byte) (name, value []byte, err error) {
	if isWS(line[0]) {
		return nil, nil, malformed("obs-fold or whitespace before field name")
	}
	k := skipToken(line, 0)
	switch {
	case k == len(line):
		return nil, nil, malformed("field line without colon")
	case line[k] == ':' && k > 0:
	case isWS(line[k]):
		return nil, nil, malformed("whitespace between field name and colon")
	default:
		return nil, nil, malformed("invalid byte in field name")
	}
	value = trimOWS(line[k+1:])
	if !validFieldValue(value) {
		return nil, nil, malformed("invalid byte in field value")
	}
	return line[:k], value, nil
}

// validFieldValue reports whether v holds only field bytes (isFieldByte). It
// tests eight bytes at a time: a word passes when none of its bytes is below
// 0x20 or equal to 0x7f (the "has less than" and "has zero" bit tricks, which
// never miss and only misfire when some byte really matches); such a word,
// most often one holding a tab, is then checked bytewise.
func validFieldValue(v []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for len(v) >= 8 {
		w := binary.LittleEndian.Uint64(v)
		ctl := (w - 0x20*ones) &^ w & highs
		del := (w ^ 0x7f*ones - ones) &^ (w ^ 0x7f*ones) & highs
		if ctl|del != 0 && !validFieldBytes(v[:8]) {
			return false
		}
		v = v[8:]
	}
	return validFieldBytes(v)
}

func validFieldBytes(v []byte) bool {
	for _, c := range v {
		if !isFieldByte(c) {
			return false
		}
	}
	return true
}

// validAuthority checks uri-host [ ":" port ] (RFC 3986 §3.2.2): a reg-name
// (unreserved, sub-delims, pct-encoded), an IPv4 address (a reg-name
// syntactically) or a bracketed IPv6 literal, then an optional port of 1-5
// digits. Userinfo ("@"), paths, spaces and controls fail. An empty value is
// valid only when !needHost (an empty Host field, RFC 9112 §3.2).
func validAuthority(b []byte, needHost, needPort bool) bool {
	if len(b) == 0 {
		return !needHost && !needPort
	}
	i := 0
	if b[0] == '[' {
		i = 1
		for i < len(b) && (unhex(b[i]) >= 0 || b[i] == ':' || b[i] == '.') {
			i++
		}
		if i == 1 || i == len(b) || b[i] != ']' {
			return false
		}
		i++
	} else {
		for i < len(b) {
			if b[i] == '%' {
				if i+2 >= len(b) || unhex(b[i+1]) < 0 || unhex(b[i+2]) < 0 {
					return false
				}
				i += 3
				continue
			}
			if !inSet(b[i], regLo, regHi) {
				break
			}
			i++
		}
		if i == 0 {
			return false // ":80" alone has no host
		}
	}
	if i == len(b) {
		return !needPort
	}
	if b[i] != ':' {
		return false
	}
	port := b[i+1:]
	if len(port) == 0 || len(port) > 5 {
		return false
	}
	for _, c := range port {
		if !isDigit(c) {
			return false
		}
	}
	return true
}
