package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Listener protocols.
const (
	// ProtocolHTTP is an HTTP/1.1 (and HTTP/2 over TLS) reverse proxy listener.
	ProtocolHTTP = "http"
	// ProtocolTCP is a layer-4 listener that forwards whole connections.
	ProtocolTCP = "tcp"
)

// HTTP engines of a plaintext http listener.
const (
	// EngineNative is ballast's own HTTP/1.1 engine (package h1): strict and fast.
	EngineNative = "native"
	// EngineNetHTTP is Go's net/http server and transport.
	EngineNetHTTP = "net_http"
)

// Health check types.
const (
	// HealthHTTP probes with an HTTP GET and checks the status.
	HealthHTTP = "http"
	// HealthTCP probes by opening a TCP connection.
	HealthTCP = "tcp"
	// HealthNone disables active checks; backends are always up unless ejected.
	HealthNone = "none"
)

// Backend protocols (pool backend_protocol).
const (
	// BackendHTTP1 speaks HTTP/1.1 to the backends.
	BackendHTTP1 = "http1"
	// BackendH2C speaks HTTP/2: cleartext, or over the pool's tls.
	BackendH2C = "h2c"
)

// Retry conditions other than a status code.
const (
	// RetryConnectFailure retries when dialing the backend failed.
	RetryConnectFailure = "connect_failure"
	// RetryTimeout retries when the backend did not answer in time.
	RetryTimeout = "timeout"
	// RetryReset retries when the backend reset the connection.
	RetryReset = "reset"
)

// ParseStatusRange parses expect_status, "200" or "200-399", into an
// inclusive range within 100..599.
func ParseStatusRange(s string) (lo, hi int, err error) {
	lo, hi, err = parseRange(s, 100, 599)
	if err != nil {
		return 0, 0, fmt.Errorf("invalid expect_status %q (want NNN or NNN-NNN within 100-599)", s)
	}
	return lo, hi, nil
}

// ParsePortRange parses launch ports, "18000-18999", into an inclusive range
// within 1..65535.
func ParsePortRange(s string) (lo, hi int, err error) {
	lo, hi, err = parseRange(s, 1, 65535)
	if err != nil || !strings.Contains(s, "-") {
		return 0, 0, fmt.Errorf("invalid ports %q (want A-B with 1 <= A <= B <= 65535)", s)
	}
	return lo, hi, nil
}

// RetryStatus returns the status code of a retry condition such as "502",
// or 0 when cond is not a 5xx status code.
func RetryStatus(cond string) int {
	n, err := strconv.Atoi(cond)
	if err != nil || len(cond) != 3 || n < 500 || n > 599 {
		return 0
	}
	return n
}

// parseRange parses "A" or "A-B" into min <= A <= B <= max.
func parseRange(s string, minV, maxV int) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err = parseDecimal(a)
	if err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parseDecimal(b); err != nil {
			return 0, 0, err
		}
	}
	if lo < minV || hi > maxV || lo > hi {
		return 0, 0, errors.New("out of range")
	}
	return lo, hi, nil
}

// parseDecimal accepts only plain digits (no sign, no spaces), at most 9 of them.
func parseDecimal(s string) (int, error) {
	if s == "" || len(s) > 9 || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("not a number")
	}
	return strconv.Atoi(s)
}

// checkHostPort validates "host:port" with a numeric port in 1..65535. The
// host may be an IP address or a hostname; needHost forbids an empty host.
func checkHostPort(addr string, needHost bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q (want host:port, like 127.0.0.1:8080)", addr)
	}
	if p, err := parseDecimal(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("invalid port %q in %q (want 1..65535)", port, addr)
	}
	switch {
	case host == "":
		if needHost {
			return fmt.Errorf("address %q needs a host", addr)
		}
	case isIP(host), isHostname(host):
	default:
		return fmt.Errorf("invalid host %q in %q", host, addr)
	}
	return nil
}

// isIP reports whether s is an IPv4 or IPv6 address (with an optional zone).
func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// isHostname reports whether s is a DNS name: dot-separated labels of
// letters, digits and inner hyphens (underscores allowed), 253 bytes at most.
// An all-digit last label is refused, so that "300.1.1.1" is not a name.
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	if last := s[strings.LastIndexByte(s, '.')+1:]; strings.Trim(last, "0123456789") == "" {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !isAlnum(r) && r != '-' && r != '_' {
				return false
			}
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token, as header and cookie names must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !isAlnum(r) && !strings.ContainsRune("!#$%&'*+-.^_`|~", r) {
			return false
		}
	}
	return true
}

// isPoolName reports whether s uses only letters, digits, '_', '.' and '-'.
func isPoolName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !isAlnum(r) && r != '_' && r != '.' && r != '-' {
			return false
		}
	}
	return true
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}
