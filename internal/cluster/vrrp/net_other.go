//go:build !linux

package vrrp

import "errors"

// openLink is Linux-only: raw IP sockets, netlink and AF_PACKET.
func openLink(Config) (link, error) {
	return nil, errors.New("vrrp is only supported on linux")
}
