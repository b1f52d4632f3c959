package config

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseRanges: expect_status and launch port ranges either fail or give
// lo <= hi within their bounds, from plain digits only, and print back to a
// text that parses to the same range.
func FuzzParseRanges(f *testing.F) {
	for _, s := range []string{"200", "200-399", "18000-18999", "1-65535", "0", "599-100", "+200", " 200", "200-", "-200",
		"2OO", "200-300-400", "000000200", "0000000200", "99999999999999999999", "1e3", "٣٠٠", "200\x00", "65536"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, r := range []struct {
			name     string
			parse    func(string) (int, int, error)
			min, max int
		}{
			{"status", ParseStatusRange, 100, 599},
			{"ports", ParsePortRange, 1, 65535},
		} {
			lo, hi, err := r.parse(s)
			if err != nil {
				if lo != 0 || hi != 0 {
					t.Fatalf("%s %q: error %v with range %d-%d", r.name, s, err, lo, hi)
				}
				continue
			}
			if lo < r.min || hi > r.max || lo > hi {
				t.Fatalf("%s %q: range %d-%d outside %d-%d", r.name, s, lo, hi, r.min, r.max)
			}
			if strings.Trim(s, "0123456789-") != "" || strings.Count(s, "-") > 1 {
				t.Fatalf("%s %q accepted: not digits and one dash", r.name, s)
			}
			again := strconv.Itoa(lo) + "-" + strconv.Itoa(hi)
			if lo2, hi2, err := r.parse(again); err != nil || lo2 != lo || hi2 != hi {
				t.Fatalf("%s %q = %d-%d, but %q parses to %d-%d, %v", r.name, s, lo, hi, again, lo2, hi2, err)
			}
		}
		if n := RetryStatus(s); n != 0 && (n < 500 || n > 599 || strconv.Itoa(n) != s) {
			t.Fatalf("RetryStatus(%q) = %d", s, n)
		}
	})
}
