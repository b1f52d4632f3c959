package server

import (
	"io"
	"net"
	"net/http"
	"strings"
)

// redirectHTTPS answers every request of a redirect_https listener with a 308
// to the same host (without its port: https has its own) and target over
// https. 308 rather than 301 keeps the method and body of a POST. A request
// without a Host (HTTP/1.0) gets 400: there is nowhere to send it.
type redirectHTTPS struct{}

func (redirectHTTPS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := hostWithoutPort(r.Host)
	if host == "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "400 missing Host header\n")
		return
	}
	target := r.URL.RequestURI()
	if !strings.HasPrefix(target, "/") {
		target = "/" // not a path (net/http answers "OPTIONS *" itself): the site's root
	}
	w.Header().Set("Location", "https://"+host+target)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusPermanentRedirect)
	if r.Method != http.MethodHead {
		io.WriteString(w, "308 permanent redirect to https\n")
	}
}

// hostWithoutPort strips the port of a Host header: "example.com:80" →
// "example.com", "[::1]:80" → "[::1]", "[::1]" → "[::1]".
func hostWithoutPort(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return h
}
