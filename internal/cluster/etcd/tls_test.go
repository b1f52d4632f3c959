package etcd

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcd with TLS, client certificates and auth: a Store with the right CA,
// certificate and password works (writes, watch, registration); a wrong
// password or an untrusted server certificate make Open fail with a clear
// error instead of retrying forever.
func TestTLSAndAuth(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	ms := startCluster(t, 1, memberOpts{tls: pki})
	eps := endpoints(ms...)
	enableAuth(t, eps, pki)
	stranger := newTestPKI(t)

	good := Config{Endpoints: eps, Username: "ballast", Password: "s3cret", CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey}
	a, b := openStore(t, good), openStore(t, good)
	ctx := t.Context()
	ch := b.Watch(ctx)
	if err := a.PutBackend(ctx, "app", Backend{Addr: "127.0.0.1:8001"}); err != nil {
		t.Fatal(err)
	}
	reg, err := a.Register(ctx, "app", Backend{Addr: "127.0.0.1:8002"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, took := waitSnapshot(t, ch, time.Second, "writes over TLS with auth", func(s Snapshot) bool {
		return sameAddrs(s, "app", "127.0.0.1:8001", "127.0.0.1:8002")
	})
	t.Logf("over TLS with auth: both backends seen by the other node after %v", took.Round(time.Millisecond))
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	if !a.Healthy() {
		t.Errorf("not healthy: %v", a.LastError())
	}

	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"wrong password", func(c *Config) { c.Password = "wrong" }, "authentication failed"},
		{"untrusted server certificate", func(c *Config) { c.CAFile = "" }, "x509"},
		{"client certificate from another CA", func(c *Config) { c.CertFile, c.KeyFile = stranger.clientCert, stranger.clientKey }, "tls: bad certificate"},
		{"no client certificate", func(c *Config) { c.CertFile, c.KeyFile = "", "" }, "tls: bad certificate"},
		{"no permission outside its prefix", func(c *Config) { c.Prefix = "/other/" }, "permission denied"},
	} {
		cfg := good
		tc.edit(&cfg)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		start := time.Now()
		s, err := Open(ctx, cfg, testLogger(t))
		cancel()
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", tc.name)
			continue
		}
		t.Logf("%s: Open failed after %v: %v", tc.name, time.Since(start).Round(time.Millisecond), err)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not say %q", tc.name, err, tc.want)
		}
	}
}

// enableAuth creates root and a "ballast" user allowed /ballast/ only, and
// turns authentication on.
func enableAuth(t *testing.T, eps []string, pki *testPKI) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: pki.clientTLS(t), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "ballast"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "ballast", "/ballast/", clientv3.GetPrefixRangeEnd("/ballast/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "ballast", "s3cret"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "ballast", "ballast"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("enabling auth, step %d: %v", i+1, err)
		}
	}
}
