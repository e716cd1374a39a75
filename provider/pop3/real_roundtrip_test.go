package pop3_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
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
		require.NoError(t, lmtpDeliver(ctx, h.env, tg.Mailbox.Address, []byte(raw)))
	}
	proxy := newTurnProxy(t, h.env.POP3Addr)
	proxy.latency = time.Millisecond
	tg.Profile.Incoming = endpoint(t, fmt.Sprintf("127.0.0.1:%d", proxy.port()), crmsync.SecurityPlaintext)

	// fetch reads a first batch of max messages on a new connection, and returns the
	// turns it cost, QUIT included.
	fetch := func(max int) int {
		t.Helper()
		proxy.reset()
		c, err := h.dialer.DialConn(t.Context(), tg)
		require.NoError(t, err)
		b, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{Max: max})
		require.NoError(t, err)
		require.NoError(t, c.Close())
		require.Len(t, b.Emails, max)
		require.Empty(t, b.Failed)
		assert.Contains(t, b.Emails[max-1].TextBody, "A line of a message body")
		assert.Equal(t, max, proxy.count("TOP"))
		assert.Equal(t, max, proxy.count("RETR"))
		return int(proxy.turns.Load())
	}

	small, large := fetch(10), fetch(delivered)
	t.Logf("round trips with PIPELINING: %d for 10 messages, %d for %d", small, large, delivered)
	assert.Equal(t, small, large, "a batch costs the same round trips whatever its size")
	// CAPA, USER, PASS, UIDL, LIST, the TOPs, the RETRs, QUIT.
	assert.LessOrEqual(t, large, 8)

	proxy.stripPipelining = true
	without := fetch(10)
	t.Logf("round trips without PIPELINING: %d for 10 messages", without)
	assert.GreaterOrEqual(t, without, small+2*(10-1), "one at a time: two round trips per message")
}
