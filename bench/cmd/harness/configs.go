package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Addresses: the proxy under test listens on proxyAddr, the two origins on originAddrs.
const proxyAddr = "127.0.0.1:18080"

var originAddrs = []string{"127.0.0.1:18081", "127.0.0.1:18082"}

// nginxTempPaths keeps every nginx temp directory inside the harness's work dir.
func nginxTempPaths(dir string) string {
	var b strings.Builder
	for _, k := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&b, "    %s_temp_path %s;\n", k, filepath.Join(dir, k+"_temp"))
	}
	return b.String()
}

// originConf is a minimal nginx origin: a short body at / and a 1 MiB file at /1m.
func originConf(dir, addr, root string) string {
	return fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
%[3]s    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 100000000;
    default_type application/octet-stream;
    server {
        listen %[2]s backlog=4096;
        root %[4]s;
        location = / { return 200 "hello from origin\n"; }
        location = /1m { }
    }
}
`, dir, addr, nginxTempPaths(dir), root)
}

// writeProxyConfigs writes every proxy's config for every mode into dir and
// returns the path of each, keyed "proxy/mode".
func writeProxyConfigs(dir string, streamModule string) (map[string]string, error) {
	for _, sub := range []string{"ballast", "haproxy", "nginx/http", "nginx/tls", "nginx/tcp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	cert, key, combined, err := writeCert(dir)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	put := func(name, body string) error {
		p := filepath.Join(dir, name)
		files[strings.TrimSuffix(name, filepath.Ext(name))] = p
		return os.WriteFile(p, []byte(body), 0o644)
	}

	// ballast
	var be strings.Builder
	for _, a := range originAddrs {
		fmt.Fprintf(&be, "      - addr: %s\n", a)
	}
	ballastPool := "pools:\n  origins:\n    algorithm: round_robin\n    backends:\n" + be.String()
	for mode, listener := range map[string]string{
		"http": engineLine() + "    routes:\n      - pool: origins\n",
		"tls":  fmt.Sprintf("    tls: {cert: %s, key: %s}\n    routes:\n      - pool: origins\n", cert, key),
		"tcp":  "    protocol: tcp\n    pool: origins\n",
	} {
		body := fmt.Sprintf("shutdown_timeout: 1s\nlisteners:\n  - name: bench\n    listen: %s\n%s%s", proxyAddr, listener, ballastPool)
		if err := put("ballast/"+mode+".yaml", body); err != nil {
			return nil, err
		}
	}

	// HAProxy: the same headers ballast adds (X-Forwarded-For/-Proto/-Host, X-Request-Id).
	var hs strings.Builder
	for i, a := range originAddrs {
		fmt.Fprintf(&hs, "    server o%d %s\n", i+1, a)
	}
	hGlobal := `global
    nbthread 2
    maxconn 10500
    no strict-limits

defaults
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    maxconn 10500
`
	hHTTP := "    mode http\n    http-reuse always\n"
	hFront := `    option forwardfor
    http-request set-header X-Forwarded-Proto %s
    http-request set-header X-Forwarded-Host %%[req.hdr(host)]
    unique-id-format %%{+X}o%%ci%%cp%%fi%%fp%%Ts%%rt%%pid
    unique-id-header X-Request-Id
`
	for mode, bind := range map[string]string{
		"http": "    bind " + proxyAddr + "\n",
		"tls":  "    bind " + proxyAddr + " ssl crt " + combined + " alpn h2,http/1.1\n",
		"tcp":  "    bind " + proxyAddr + "\n",
	} {
		m, front := "    mode tcp\n", ""
		switch mode {
		case "http":
			m, front = hHTTP, fmt.Sprintf(hFront, "http")
		case "tls":
			m, front = hHTTP, fmt.Sprintf(hFront, "https")
		}
		body := hGlobal + m + "\nfrontend fe\n" + bind + front + "    default_backend be\n\nbackend be\n    balance roundrobin\n" + hs.String()
		if err := put("haproxy/"+mode+".cfg", body); err != nil {
			return nil, err
		}
	}

	// nginx as a proxy: the same headers again.
	var ns strings.Builder
	for _, a := range originAddrs {
		fmt.Fprintf(&ns, "        server %s;\n", a)
	}
	nHead := func(sub string) string {
		d := filepath.Join(dir, "nginx", sub)
		return fmt.Sprintf(`daemon off;
master_process on;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 16384; }
`, d)
	}
	nHTTP := func(sub, listen, proto string) string {
		d := filepath.Join(dir, "nginx", sub)
		return nHead(sub) + fmt.Sprintf(`http {
    access_log off;
%[1]s    keepalive_timeout 75s;
    keepalive_requests 100000000;
    upstream origins {
%[2]s        keepalive 64;
        keepalive_requests 100000000;
    }
    server {
        listen %[3]s;
%[4]s        location / {
            proxy_pass http://origins;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto %[5]s;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Request-Id $request_id;
            proxy_max_temp_file_size 0;
        }
    }
}
`, nginxTempPaths(d), ns.String(), listen, func() string {
			if proto != "https" {
				return ""
			}
			return fmt.Sprintf("        ssl_certificate %s;\n        ssl_certificate_key %s;\n", cert, key)
		}(), proto)
	}
	if err := put("nginx/http.conf", nHTTP("http", proxyAddr+" backlog=4096", "http")); err != nil {
		return nil, err
	}
	if err := put("nginx/tls.conf", nHTTP("tls", proxyAddr+" ssl http2 backlog=4096", "https")); err != nil {
		return nil, err
	}
	if streamModule != "" {
		body := "load_module " + streamModule + ";\n" + nHead("tcp") + fmt.Sprintf(`stream {
    upstream origins {
%s    }
    server {
        listen %s backlog=4096;
        proxy_pass origins;
    }
}
`, ns.String(), proxyAddr)
		if err := put("nginx/tcp.conf", body); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// writeCert writes a fresh self-signed ECDSA P-256 certificate for 127.0.0.1.
func writeCert(dir string) (cert, key, combined string, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return
	}
	kder, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return
	}
	cp := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kp := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	cert, key, combined = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "combined.pem")
	for p, b := range map[string][]byte{cert: cp, key: kp, combined: append(append([]byte{}, cp...), kp...)} {
		if err = os.WriteFile(p, b, 0o644); err != nil {
			return
		}
	}
	return
}

// engineLine selects ballast's HTTP engine for the plaintext scenarios from
// BENCH_BALLAST_ENGINE (native or net_http; default: ballast's default).
func engineLine() string {
	if e := os.Getenv("BENCH_BALLAST_ENGINE"); e != "" {
		return "    engine: " + e + "\n"
	}
	return ""
}
