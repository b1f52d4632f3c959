package accesslog

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// maxField is the most bytes of any one string field that reach the log; a
// longer value is cut at the last UTF-8 boundary at or before it, so one
// hostile request cannot make a line arbitrarily long.
const maxField = 2048

const hexDigits = "0123456789abcdef"

// appendEntry appends e to b as one JSON object and a newline. It allocates
// only when b must grow, and reads nothing from e after it returns.
func appendEntry(b []byte, e *Entry) []byte {
	b = append(b, `{"time":"`...)
	b = appendTime(b, e.Time)
	b = append(b, `","client":`...)
	b = appendAddr(b, e.Client)
	b = append(b, `,"method":`...)
	b = appendString(b, e.Method)
	b = append(b, `,"host":`...)
	b = appendString(b, e.Host)
	b = append(b, `,"path":`...)
	b = appendString(b, e.Path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, e.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, e.BytesOut, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, e.Duration)
	b = append(b, `,"ttfb_ms":`...)
	b = appendMillis(b, e.TTFB)
	b = append(b, `,"listener":`...)
	b = appendString(b, e.Listener)
	b = append(b, `,"pool":`...)
	b = appendString(b, e.Pool)
	b = append(b, `,"backend":`...)
	b = appendString(b, e.Backend)
	b = append(b, `,"retries":`...)
	b = strconv.AppendInt(b, int64(e.Retries), 10)
	b = append(b, `,"queued_ms":`...)
	b = appendMillis(b, e.Queued)
	b = append(b, `,"request_id":`...)
	b = appendString(b, e.RequestID)
	return append(b, "}\n"...)
}

// appendTime appends t in UTC as RFC 3339 with milliseconds
// (2006-01-02T15:04:05.000Z). The common four-digit years are formatted by
// hand, about five times cheaper than time.AppendFormat.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	}
	hour, minute, sec := t.Clock()
	ms := t.Nanosecond() / int(time.Millisecond)
	return append(b,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// appendAddr appends a as a JSON string; the zero Addr is "". A zone
// (fe80::1%eth0) is the one part of an address that can hold arbitrary bytes,
// so it goes through the escaper.
func appendAddr(b []byte, a netip.Addr) []byte {
	b = append(b, '"')
	if a.IsValid() {
		b = a.WithZone("").AppendTo(b)
		if zone := a.Zone(); zone != "" {
			b = append(b, '%')
			b = appendEscaped(b, zone)
		}
	}
	return append(b, '"')
}

// appendMillis appends d as milliseconds with exactly three decimals,
// rounded to the nearest microsecond, using integer arithmetic only.
func appendMillis(b []byte, d time.Duration) []byte {
	u := uint64(d)
	if d < 0 {
		b = append(b, '-')
		u = -u // two's complement: also right for math.MinInt64
	}
	us := (u + 500) / 1000
	b = strconv.AppendUint(b, us/1000, 10)
	f := us % 1000
	return append(b, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
}

// appendString appends s, cut to maxField bytes, as a quoted JSON string
// (RFC 8259): '"' and '\' are backslash-escaped, control characters and DEL
// become \u00XX, U+2028 and U+2029 become \u2028 and \u2029 (JavaScript line
// terminators), and every byte that is not part of valid UTF-8 becomes
// U+FFFD, as encoding/json does. The result never contains a raw newline, so
// no value can end a line or open a field of its own.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

// appendEscaped appends the inside of appendString's quotes.
func appendEscaped(b []byte, s string) []byte {
	s = truncate(s, maxField)
	start := 0
	for i := 0; i < len(s); {
		// Skip eight plain ASCII bytes at a time; most paths and hosts
		// are nothing else.
		if i+8 <= len(s) && plain8(s[i:i+8]) {
			i += 8
			continue
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			if c == '"' || c == '\\' {
				b = append(b, '\\', c)
			} else {
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(b, s[start:]...)
}

// plain8 reports whether none of the 8 bytes of s needs escaping or UTF-8
// checking: none is below 0x20, '"', '\\', DEL or non-ASCII. It tests all
// eight at once in a uint64 ("SWAR"); on typical hosts, paths and IDs the
// escaper spends about a fifth less than with a branch per byte.
func plain8(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	_ = s[7]
	x := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	// A byte of v has its high bit set where the byte of x is below n,
	// or equal to c (Hacker's Delight, "find a zero byte"); false
	// positives only where x itself has a high bit, which is rejected
	// anyway.
	below := func(v uint64, n uint64) uint64 { return (v - ones*n) &^ v }
	bad := x | below(x, 0x20) | below(x^(ones*'"'), 1) | below(x^(ones*'\\'), 1) | below(x^(ones*0x7f), 1)
	return bad&highs == 0
}

// truncate returns s cut to at most n bytes. A cut that would split a valid
// multi-byte character is moved back to the character's first byte; invalid
// bytes are left for appendString to replace.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for i := n; i >= 0 && i > n-utf8.UTFMax; i-- {
		if !utf8.RuneStart(s[i]) {
			continue
		}
		if _, size := utf8.DecodeRuneInString(s[i:]); i < n && i+size > n {
			return s[:i]
		}
		break
	}
	return s[:n]
}
