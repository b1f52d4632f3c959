package server

import (
	"net/http"
	"strings"
	"testing"

	"ballast/internal/testutil"
)

// A backend that refuses connections costs the clients nothing: each request
// that picks it goes on to another backend (nothing was sent, so this is safe
// for any method).
func TestConnectFailureTriesAnotherBackend(t *testing.T) {
	_, addrs := backends(t, 2)
	dead := testutil.FreeAddr(t)
	_, url := start(t, httpConfig(t, "algorithm: round_robin", addrs[0], dead, addrs[1]))

	got := count(hits(t, url+"/", 30)) // hits fails the test on any non-200
	if got["b0"]+got["b1"] != 30 {
		t.Fatalf("answers %v", got)
	}
	c := testutil.Client()
	for i := range 6 {
		resp, err := c.Post(url+"/upload", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %d: status %d", i, resp.StatusCode)
		}
	}
}
