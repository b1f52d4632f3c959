package health

import (
	"context"
	"fmt"
	"net"
)

// TCPChecker passes when a TCP connection to the target can be opened. It
// closes the connection at once without sending anything.
type TCPChecker struct {
	dialer net.Dialer
}

var _ Checker = (*TCPChecker)(nil)

// NewTCPChecker returns a checker that connects, then closes.
func NewTCPChecker() *TCPChecker {
	return &TCPChecker{dialer: net.Dialer{KeepAlive: -1}}
}

// Check connects to addr within ctx's deadline.
func (c *TCPChecker) Check(ctx context.Context, addr string) error {
	conn, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	return conn.Close()
}
