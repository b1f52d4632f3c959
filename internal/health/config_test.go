package health

import (
	"testing"
	"time"

	"ballast/internal/config"
)

func TestFromConfig(t *testing.T) {
	tests := []struct {
		name    string
		h       *config.HealthCheck
		checker string // "http", "tcp" or "" for none
		wantErr bool
	}{
		{"absent", nil, "", false},
		{"none", &config.HealthCheck{Type: "none"}, "", false},
		{"tcp", &config.HealthCheck{Type: "tcp", Interval: config.Duration(time.Second)}, "tcp", false},
		{"http", &config.HealthCheck{Type: "http", Path: "/healthz", ExpectStatus: "204"}, "http", false},
		{"bad expect", &config.HealthCheck{Type: "http", ExpectStatus: "2xx"}, "", true},
		{"bad type", &config.HealthCheck{Type: "udp"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, chk, err := FromConfig(tt.h)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			switch c := chk.(type) {
			case nil:
				if tt.checker != "" {
					t.Errorf("no checker, want %s", tt.checker)
				}
			case *TCPChecker:
				if tt.checker != "tcp" {
					t.Errorf("tcp checker, want %q", tt.checker)
				}
				if cfg.Interval != time.Second {
					t.Errorf("interval %v, want 1s", cfg.Interval)
				}
			case *HTTPChecker:
				if tt.checker != "http" || c.path != "/healthz" || c.lo != 204 || c.hi != 204 {
					t.Errorf("http checker %+v, want /healthz expecting 204", c)
				}
			}
		})
	}
}
