package etcd

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// gatewayCall POSTs body as JSON to etcd's JSON gateway and decodes the answer.
func gatewayCall(t *testing.T, base, path string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(base+"/v3/"+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST /v3/%s: %v", path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST /v3/%s: %s: %v", path, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v3/%s: %s: %v", path, resp.Status, out)
	}
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// The registration protocol of README.md, against etcd 3.4's JSON gateway:
// first the three HTTP calls the snippet makes, from Go; then the Python
// snippet itself, verbatim from README.md.
func TestJSONGatewayRegistration(t *testing.T) {
	t.Parallel()
	ms := startCluster(t, 1, memberOpts{})
	base := ms[0].clientURL
	s := openStore(t, Config{Endpoints: endpoints(ms...)})
	ch := s.Watch(t.Context())
	present := func(addr string, want bool) func(Snapshot) bool {
		return func(s Snapshot) bool { _, ok := find(s, "app", addr); return ok == want }
	}

	t.Run("http", func(t *testing.T) {
		grant := gatewayCall(t, base, "lease/grant", map[string]any{"TTL": 2})
		lease, _ := grant["ID"].(string) // int64 travels as a JSON string
		if lease == "" || grant["TTL"] != "2" {
			t.Fatalf("lease/grant answered %v", grant)
		}
		gatewayCall(t, base, "kv/put", map[string]any{
			"key":   b64("/ballast/registrations/app/127.0.0.1:6001"),
			"value": b64(`{"addr": "127.0.0.1:6001", "weight": 2}`),
			"lease": lease,
		})
		snap, took := waitSnapshot(t, ch, time.Second, "gateway registration", present("127.0.0.1:6001", true))
		if b, _ := find(snap, "app", "127.0.0.1:6001"); b != (Backend{Addr: "127.0.0.1:6001", Weight: 2, Registered: true}) {
			t.Errorf("registered through the gateway: %+v", b)
		}
		t.Logf("registration through the gateway seen after %v", took.Round(time.Millisecond))
		ka := gatewayCall(t, base, "lease/keepalive", map[string]any{"ID": lease})
		if r, _ := ka["result"].(map[string]any); r["TTL"] != "2" {
			t.Fatalf("lease/keepalive answered %v, want result.TTL 2", ka)
		}
		gatewayCall(t, base, "lease/revoke", map[string]any{"ID": lease})
		waitSnapshot(t, ch, time.Second, "gateway revoke", present("127.0.0.1:6001", false))
		// What the snippet relies on to notice a lost lease: no TTL.
		ka = gatewayCall(t, base, "lease/keepalive", map[string]any{"ID": lease})
		if r, _ := ka["result"].(map[string]any); r == nil || r["TTL"] != nil {
			t.Fatalf("lease/keepalive of a revoked lease answered %v, want a result without TTL", ka)
		}
	})

	t.Run("python snippet", func(t *testing.T) {
		python, err := exec.LookPath("python3")
		if err != nil {
			t.Skip("SKIP: needs python3 (Debian package python3) to run the README's snippet")
		}
		snippet := readmeSnippet(t)
		driver := snippet + `
import sys
ETCD = sys.argv[1]
register("app", "127.0.0.1:6002", ttl=2, weight=3, backup=True)
time.sleep(120)
`
		cmd := exec.Command(python, "-c", driver, base)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
			if t.Failed() {
				t.Logf("python stderr:\n%s", stderr.String())
			}
		})
		snap, took := waitSnapshot(t, ch, 5*time.Second, "python registration", present("127.0.0.1:6002", true))
		if b, _ := find(snap, "app", "127.0.0.1:6002"); b != (Backend{Addr: "127.0.0.1:6002", Weight: 3, Backup: true, Registered: true}) {
			t.Errorf("registered by python: %+v", b)
		}
		t.Logf("python registered after %v", took.Round(time.Millisecond))

		// Its lease lost (as after a long outage): it registers again.
		resp, err := s.cli.Get(t.Context(), "/ballast/registrations/app/127.0.0.1:6002")
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("python's key: %v %+v", err, resp)
		}
		if _, err := s.cli.Revoke(t.Context(), clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
			t.Fatal(err)
		}
		waitSnapshot(t, ch, time.Second, "removal by the revoke", present("127.0.0.1:6002", false))
		_, took = waitSnapshot(t, ch, 5*time.Second, "python registering again", present("127.0.0.1:6002", true))
		t.Logf("python registered again %v after its lease was revoked", took.Round(time.Millisecond))

		time.Sleep(2 * time.Second) // renewals keep it listed past the TTL
		if _, ok := find(currentSnapshot(t, s), "app", "127.0.0.1:6002"); !ok {
			t.Fatal("python's registration expired while it runs")
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		_, took = waitSnapshot(t, ch, 5*time.Second, "expiry after python is killed", present("127.0.0.1:6002", false))
		t.Logf("python's registration vanished %v after SIGKILL (ttl 2s)", took.Round(time.Millisecond))
	})
}

// readmeSnippet returns the Python block of README.md.
func readmeSnippet(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```python\n")
	code, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no ```python block")
	}
	return code
}
