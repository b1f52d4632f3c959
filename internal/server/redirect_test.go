package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"ballast/internal/testutil"
)

// A redirect_https listener answers every request with a 308 to the same host
// without its port and the same path and query over https, whether or not it
// has routes; nothing reaches a backend.
func TestRedirectHTTPS(t *testing.T) {
	be := testutil.NewBackend(t, "b", nil)
	for _, withRoutes := range []bool{false, true} {
		t.Run(fmt.Sprintf("routes=%v", withRoutes), func(t *testing.T) {
			yaml := strings.Replace(httpConfig(t, "", be.Addr()), "    routes:\n", "    redirect_https: true\n    routes:\n", 1)
			if !withRoutes {
				yaml = strings.Replace(yaml, "    routes:\n      - pool: app\n", "", 1)
			}
			_, url := start(t, yaml)
			tests := []struct {
				method, host, target, want string
			}{
				{"GET", "example.com:8080", "/p/a%20b?x=1&y=%2F", "https://example.com/p/a%20b?x=1&y=%2F"},
				{"GET", "example.com", "/", "https://example.com/"},
				{"POST", "shop.example.com:80", "/cart", "https://shop.example.com/cart"},
				{"HEAD", "[::1]:8080", "/x?", "https://[::1]/x?"},
				{"GET", "[2001:db8::1]", "/v6", "https://[2001:db8::1]/v6"},
			}
			client := testutil.Client()
			for _, tc := range tests {
				req, err := http.NewRequest(tc.method, url+tc.target, strings.NewReader("body"))
				if err != nil {
					t.Fatal(err)
				}
				req.Host = tc.host
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusPermanentRedirect {
					t.Errorf("%s %s%s: status %d, want 308", tc.method, tc.host, tc.target, resp.StatusCode)
				}
				if got := resp.Header.Get("Location"); got != tc.want {
					t.Errorf("%s %s%s: Location %q, want %q", tc.method, tc.host, tc.target, got, tc.want)
				}
			}
			// HTTP/1.0 allows a request without Host: there is nowhere to send it.
			c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "GET /x HTTP/1.0\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Errorf("HTTP/1.0 without Host: %d, Location %q; want 400", resp.StatusCode, resp.Header.Get("Location"))
			}
			if n := len(be.Requests()); n != 0 {
				t.Errorf("%d requests reached the backend", n)
			}
		})
	}
}

// The redirect keeps the host but not the port of the Host header.
func TestHostWithoutPort(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":      "example.com",
		"example.com:8080": "example.com",
		"[::1]:80":         "[::1]",
		"[::1]":            "[::1]",
		"127.0.0.1:80":     "127.0.0.1",
		"":                 "",
	} {
		if got := hostWithoutPort(in); got != want {
			t.Errorf("hostWithoutPort(%q) = %q, want %q", in, got, want)
		}
	}
}
