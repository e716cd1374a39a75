package testenv

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/crmsync/crmsync"
)

// Endpoint returns the endpoint of a "host:port" address with security sec, failing t
// when addr is not one.
func Endpoint(t testing.TB, addr string, sec crmsync.Security) crmsync.Endpoint {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return crmsync.Endpoint{Host: host, Port: p, Security: sec}
}

// Deliver puts raw (an RFC 5322 message) into the INBOX of to through Dovecot's LMTP
// socket, as a mail server's delivery would: when it returns, the message is there.
func (e *Env) Deliver(ctx context.Context, to string, raw []byte) error {
	return deliverLMTP(ctx, "unix", e.LMTP, "sender@conformance.crmsync.test", []string{to}, raw)
}
