package proxy

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// hopHeaders are the hop-by-hop fields of RFC 9110 §7.6.1 (and the legacy ones
// that proxies still meet): they describe one connection and are never forwarded.
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopHeaders deletes the hop-by-hop fields from h, including every field
// that a Connection header names.
func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textprotoTrim(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

func textprotoTrim(s string) string { return strings.Trim(s, " \t") }

// upgradeType returns the protocol a request or response asks to switch to
// ("websocket"), or "" when it does not ask for an upgrade.
func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// prepareRequestHeader turns the client's header into the one the backend gets:
// hop-by-hop fields removed (keeping "TE: trailers", which gRPC needs, and the
// Upgrade handshake when the client asks for one), X-Forwarded-* set and the
// request id kept or generated. It returns the request id.
func prepareRequestHeader(h http.Header, clientIP, host string, tls bool) string {
	upgrade := upgradeType(h)
	teTrailers := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	removeHopHeaders(h)
	if teTrailers {
		h["Te"] = []string{"trailers"}
	}
	if upgrade != "" {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{upgrade}
	}

	if clientIP != "" {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + clientIP}
		} else {
			h["X-Forwarded-For"] = []string{clientIP}
		}
	}
	if tls {
		h["X-Forwarded-Proto"] = []string{"https"}
	} else {
		h["X-Forwarded-Proto"] = []string{"http"}
	}
	if host != "" {
		h["X-Forwarded-Host"] = []string{host}
	}
	// Exactly one X-Request-Id goes on: the client's first, or a new one.
	id := h.Get("X-Request-Id")
	if id == "" || len(id) > maxRequestIDLen {
		id = newRequestID()
	}
	h["X-Request-Id"] = []string{id}
	return id
}

// maxRequestIDLen bounds a client-supplied request id; a longer one is
// replaced, so that ids stay usable as log fields.
const maxRequestIDLen = 200

// newRequestID returns 32 random hex digits (128 bits), as appendRequestID.
func newRequestID() string {
	var b [32]byte
	return string(appendRequestID(b[:0]))
}

// copyHeader adds every field of src to dst.
func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		dst[k] = append(dst[k], vv...)
	}
}
