package h1

import (
	"strings"
	"testing"
)

// TestValidFieldValue checks the word-at-a-time test against the bytewise
// definition for every byte value at every position of a 19-byte value.
func TestValidFieldValue(t *testing.T) {
	for pos := range 19 {
		for c := range 256 {
			v := []byte("abcdefgh\tjklmnopqrs")
			v[pos] = byte(c)
			if got, want := validFieldValue(v), validFieldBytes(v); got != want {
				t.Fatalf("byte %#x at %d: got %v, want %v", c, pos, got, want)
			}
		}
	}
}

// TestCharClasses checks the constant class tables against RFC 9110 §5.6.2
// and RFC 3986 §3.2.2, written out plainly.
func TestCharClasses(t *testing.T) {
	const alnum = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	tchar := alnum + "!#$%&'*+-.^_`|~"
	reg := alnum + "-._~" + "!$&'()*+,;="
	for c := range 256 {
		b := byte(c)
		if got, want := isTchar(b), strings.IndexByte(tchar, b) >= 0; got != want {
			t.Errorf("isTchar(%#x) = %v, want %v", c, got, want)
		}
		if got, want := inSet(b, tcharLo, tcharHi), strings.IndexByte(tchar, b) >= 0; got != want {
			t.Errorf("tchar mask %#x = %v, want %v", c, got, want)
		}
		if got, want := inSet(b, regLo, regHi), strings.IndexByte(reg, b) >= 0; got != want {
			t.Errorf("reg-name mask %#x = %v, want %v", c, got, want)
		}
	}
}
