package health

import (
	"fmt"

	"ballast/internal/config"
)

// FromConfig turns a pool's health_check section (defaults applied,
// validated) into a Monitor's Config and its Checker. The Checker is nil when
// h is nil or its type is none: the pool has no active checks.
func FromConfig(h *config.HealthCheck) (Config, Checker, error) {
	if h == nil {
		return Config{}, nil, nil
	}
	cfg := Config{Interval: h.Interval.D(), Timeout: h.Timeout.D(), Rise: h.Rise, Fall: h.Fall}
	switch h.Type {
	case config.HealthNone:
		return cfg, nil, nil
	case config.HealthTCP:
		return cfg, NewTCPChecker(), nil
	case config.HealthHTTP, "":
		expect := h.ExpectStatus
		if expect == "" {
			expect = config.DefaultExpectStatus
		}
		lo, hi, err := config.ParseStatusRange(expect)
		if err != nil {
			return Config{}, nil, fmt.Errorf("health_check.expect_status: %w", err)
		}
		return cfg, NewHTTPChecker(h.Path, h.Host, lo, hi), nil
	}
	return Config{}, nil, fmt.Errorf("health_check.type: unknown type %q", h.Type)
}
