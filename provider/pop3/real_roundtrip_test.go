package pop3_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider"
)

// TestRealRoundTrips counts, through a proxy, the round trips a FetchIncoming costs
// against Dovecot, which offers PIPELINING: a batch of 100 messages costs as many as
// a batch of 10 (a session's commands, then one turn for the TOPs and one for the
// RETRs), where a server without PIPELINING costs two per message.
func TestRealRoundTrips(t *testing.T) {
	h := newRealHarness(t, crmsync.SecurityPlaintext)
	tg := h.target(h.env.AddUser(t, "pop3-turns"), h.env.Password)
	ctx := ctxTimeout(t)
	const delivered = 100
	body := strings.Repeat("A line of a message body, long enough to fill some TCP segments.\r\n", 80)
	for i := 1; i <= delivered; i++ {
		raw := fmt.Sprintf("From: Bob <bob@example.test>\r\nSubject: turns %d\r\nMessage-ID: <turns.%d.%d@example.test>\r\n\r\n%s",
			i, i, time.Now().UnixNano(), body)
		require.NoError(t, h.env.Deliver(ctx, tg.Mailbox.Address, []byte(raw)))
	}
	// fetch reads a first batch of max messages on a new connection through p, and
	// returns the turns it cost, QUIT included.
	fetch := func(p *testenv.Proxy, max int) int {
		t.Helper()
		p.ResetCounters()
		tg.Profile.Incoming = testenv.Endpoint(t, p.Addr(), crmsync.SecurityPlaintext)
		c, err := h.dialer.DialConn(t.Context(), tg)
		require.NoError(t, err)
		b, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{Max: max})
		require.NoError(t, err)
		require.NoError(t, c.Close())
		require.Len(t, b.Emails, max)
		require.Empty(t, b.Failed)
		assert.Contains(t, b.Emails[max-1].TextBody, "A line of a message body")
		assert.Equal(t, max, countVerb(p, "TOP"))
		assert.Equal(t, max, countVerb(p, "RETR"))
		return int(p.Counts().Turns)
	}

	// The latency keeps the proxy from taking pipelined commands for turns: it has
	// read a write of them whole before the answer to the first comes back.
	proxy := testenv.StartProxy(t, h.env.POP3Addr, testenv.ProxyOptions{Latency: time.Millisecond})
	small, large := fetch(proxy, 10), fetch(proxy, delivered)
	t.Logf("round trips with PIPELINING: %d for 10 messages, %d for %d", small, large, delivered)
	assert.Equal(t, small, large, "a batch costs the same round trips whatever its size")
	// CAPA, USER, PASS, UIDL, LIST, the TOPs, the RETRs, QUIT.
	assert.LessOrEqual(t, large, 8)

	// A server that does not offer PIPELINING. (A CAPA answer is small, and comes in
	// one read.)
	noPipelining := testenv.StartProxy(t, h.env.POP3Addr, testenv.ProxyOptions{
		Latency: time.Millisecond,
		Rewrite: func(chunk []byte) []byte {
			return bytes.ReplaceAll(chunk, []byte("\r\nPIPELINING\r\n"), []byte("\r\n"))
		},
	})
	without := fetch(noPipelining, 10)
	t.Logf("round trips without PIPELINING: %d for 10 messages", without)
	assert.GreaterOrEqual(t, without, small+2*(10-1), "one at a time: two round trips per message")
}

// countVerb returns how many commands of verb the client sent through p since its last
// ResetCounters.
func countVerb(p *testenv.Proxy, verb string) int {
	n := 0
	for _, l := range p.Lines() {
		if v, _, _ := strings.Cut(l, " "); strings.EqualFold(v, verb) {
			n++
		}
	}
	return n
}
