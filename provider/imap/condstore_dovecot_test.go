package imap_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider"
	imapprov "github.com/crmsync/crmsync/provider/imap"
)

// proxied returns a target of addr whose incoming endpoint is the proxy (plaintext, so
// that the proxy sees the commands).
func proxied(t *testing.T, env *testenv.Env, p *testenv.Proxy, addr string) provider.Target {
	return dcTarget(t, env, testenv.Endpoint(t, p.Addr(), crmsync.SecurityPlaintext), addr, env.Password)
}

// cycle runs one incoming cycle as the engine does: a fresh connection, FetchIncoming
// with the cursor, Close.
func cycle(t *testing.T, env *testenv.Env, tg provider.Target, req provider.FetchRequest) *provider.Batch {
	t.Helper()
	c, err := imapprov.NewDialer(imapprov.Config{}).DialConn(context.Background(), tg)
	require.NoError(t, err)
	b, err := c.FetchIncoming(dcCtx(t), req)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	return b
}

// drain fetches everything from a nil cursor and returns the last cursor.
func drain(t *testing.T, env *testenv.Env, tg provider.Target, folders []string, want int) []byte {
	t.Helper()
	var cursor []byte
	n := 0
	for range 100 {
		b := cycle(t, env, tg, provider.FetchRequest{Cursor: cursor, Max: 500, Folders: folders})
		n += len(b.Emails)
		cursor = b.Cursor
		if !b.More {
			break
		}
	}
	require.Equal(t, want, n, "messages fetched")
	return cursor
}

// Dovecot offers CONDSTORE and the provider uses it: STATUS asks HIGHESTMODSEQ and a
// changed folder is opened with EXAMINE (CONDSTORE). A flag change raises the modseq but
// brings no new message: the next cycle opens nothing and returns nothing. Fetching never
// sets \Seen (BODY.PEEK).
func TestDovecotCondStore(t *testing.T) {
	env := testenv.MailServers(t)
	addr := env.AddUser(t, "condstore")
	ids := dcDeliverN(t, env, addr, "condstore", 3)
	p := testenv.StartProxy(t, env.IMAPAddr, testenv.ProxyOptions{})
	tg := proxied(t, env, p, addr)

	cl, err := imapLogin(dcCtx(t), env, tg.Mailbox.Credentials)
	require.NoError(t, err)
	defer cl.Close()
	require.True(t, cl.Caps().Has(imap.CapCondStore), "Dovecot offers CONDSTORE")

	b := cycle(t, env, tg, provider.FetchRequest{})
	assert.Equal(t, ids, messageIDs(b.Emails))
	cmds := commands(p)
	assert.True(t, slices.ContainsFunc(cmds, func(s string) bool { return strings.HasPrefix(s, "STATUS") && strings.Contains(s, "HIGHESTMODSEQ") }), "%q", cmds)
	assert.True(t, slices.ContainsFunc(cmds, func(s string) bool { return strings.HasPrefix(s, "EXAMINE") && strings.Contains(s, "CONDSTORE") }), "%q", cmds)

	// No \Seen after the fetch; then a flag change.
	_, err = cl.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	msgs, err := cl.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{Flags: true}).Collect()
	require.NoError(t, err)
	for _, m := range msgs {
		assert.NotContains(t, m.Flags, imap.FlagSeen, "message %d", m.SeqNum)
	}
	require.NoError(t, cl.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close())

	p.ResetCounters()
	again := cycle(t, env, tg, provider.FetchRequest{Cursor: b.Cursor})
	assert.Empty(t, again.Emails)
	cmds = commands(p)
	if assert.Len(t, cmds, 3, "a flag change opens no folder: %q", cmds) {
		assert.Equal(t, "LOGIN …", cmds[0])
		assert.True(t, strings.HasPrefix(cmds[1], "STATUS INBOX ("), "%q", cmds[1])
		assert.Equal(t, "LOGOUT", cmds[2])
	}
}

// The Sent copy goes to the folder Dovecot marks \Sent (SPECIAL-USE), whatever
// Config.SentFolder names, and FindSent finds it there.
func TestDovecotSentSpecialUse(t *testing.T) {
	env := testenv.MailServers(t)
	from, to := env.AddUser(t, "sentfrom"), env.AddUser(t, "sentto")
	tg := dcTarget(t, env, testenv.Endpoint(t, env.IMAPSAddr, crmsync.SecurityTLS), from, env.Password)
	// A configured name that exists nowhere: if the provider went by name, it would
	// create this folder.
	dialer := imapprov.NewDialer(imapprov.Config{TLSConfig: env.TLSConfig(), SentFolder: "Elsewhere"})
	c, err := dialer.DialConn(context.Background(), tg)
	require.NoError(t, err)
	defer c.Close()
	id := fmt.Sprintf("special-use.%d@dovecot.crmsync.test", len(from))
	r, err := c.Send(dcCtx(t), &crmsync.Email{
		MessageID: id, From: crmsync.Address{Email: from}, To: []crmsync.Address{{Email: to}},
		Subject: "special use", TextBody: "Where does the copy go?\n",
	})
	require.NoError(t, err)
	assert.True(t, r.Copied)
	found, err := c.FindSent(dcCtx(t), id)
	require.NoError(t, err)
	assert.True(t, found, "FindSent finds the copy")
	found, err = c.FindSent(dcCtx(t), "never-sent@dovecot.crmsync.test")
	require.NoError(t, err)
	assert.False(t, found)

	// Behind the provider's back: which folder is \Sent, and what it holds.
	cl, err := imapLogin(dcCtx(t), env, tg.Mailbox.Credentials)
	require.NoError(t, err)
	defer cl.Close()
	list, err := cl.List("", "*", &imap.ListOptions{ReturnSpecialUse: true}).Collect()
	require.NoError(t, err)
	var sent string
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
		if slices.Contains(l.Attrs, imap.MailboxAttrSent) {
			sent = l.Mailbox
		}
	}
	require.Equal(t, "Sent", sent, "Dovecot's configuration marks Sent \\Sent")
	assert.NotContains(t, names, "Elsewhere", "the configured name was not used")
	_, err = cl.Select(sent, &imap.SelectOptions{ReadOnly: true}).Wait()
	require.NoError(t, err)
	data, err := cl.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: id}}}, nil).Wait()
	require.NoError(t, err)
	uids := data.AllUIDs()
	require.Len(t, uids, 1, "one copy in %s", sent)
	msgs, err := cl.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{Flags: true}).Collect()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Contains(t, msgs[0].Flags, imap.FlagSeen, "the copy is marked \\Seen")
}

// A no-change cycle costs the same whatever the size of the mailbox: on a fresh
// connection, LOGIN, one pipelined batch of STATUS commands (one per folder) and LOGOUT;
// three round trips, on 5 messages as on 500, with or without tracked folders.
func TestDovecotNoChangeRoundTrips(t *testing.T) {
	env := testenv.MailServers(t)
	p := testenv.StartProxy(t, env.IMAPAddr, testenv.ProxyOptions{Latency: 5 * time.Millisecond})
	type cost struct{ turns, lines, up int64 }
	measure := func(name string, n int, folders []string) cost {
		addr := env.AddUser(t, name) // names of one length: the LOGIN lines are as long
		dcDeliverN(t, env, addr, name, n)
		tg := proxied(t, env, p, addr)
		cursor := drain(t, env, tg, folders, n)
		p.ResetCounters()
		b := cycle(t, env, tg, provider.FetchRequest{Cursor: cursor, Folders: folders})
		require.Empty(t, b.Emails)
		require.False(t, b.More)
		c := p.Counts()
		t.Logf("%d messages, folders %v: %d round trips, commands %q, %d bytes sent, %d received",
			n, folders, c.Turns, commands(p), c.Up, c.Down)
		return cost{c.Turns, c.Lines, c.Up}
	}
	small, large := measure("noop-a", 5, nil), measure("noop-b", 500, nil)
	assert.Equal(t, small, large, "the same cost on 5 and on 500 messages")
	assert.EqualValues(t, 3, small.turns, "LOGIN, STATUS, LOGOUT")
	assert.EqualValues(t, 3, small.lines)

	folders := []string{"Sent", "Junk", "Trash"}
	withFolders := measure("noop-c", 5, folders)
	assert.EqualValues(t, 3, withFolders.turns, "the STATUS commands are pipelined")
	assert.EqualValues(t, 3+len(folders), withFolders.lines)
}

// Within a cycle (one connection, one FetchIncoming after another), a folder read in
// batches costs one round trip per batch while more remain than a batch takes: the
// header FETCH of the next batch pipelined with the body FETCH of this one, and no
// NOOP, STATUS or SEARCH. (Bodies are not fetched ahead here, so that every command
// falls in the batch that sends it: TestDovecotBodiesFetchedAhead covers that.) A message that arrives meanwhile is found by the batch
// that reaches the end of the folder. Every message is returned once, in UID order.
func TestDovecotBatchesCostOneRoundTrip(t *testing.T) {
	env := testenv.MailServers(t)
	p := testenv.StartProxy(t, env.IMAPAddr, testenv.ProxyOptions{Latency: 5 * time.Millisecond}) // so that pipelined commands are never taken for turns
	addr := env.AddUser(t, "batches")
	ids := dcDeliverN(t, env, addr, "batch", 50)
	tg := proxied(t, env, p, addr)

	c, err := imapprov.NewDialer(imapprov.Config{PrefetchBytes: -1}).DialConn(context.Background(), tg)
	require.NoError(t, err)
	defer c.Close()
	var got []string
	var cursor []byte
	for n := 1; n <= 10; n++ {
		p.ResetCounters()
		b, err := c.FetchIncoming(dcCtx(t), provider.FetchRequest{Cursor: cursor, Max: 10})
		require.NoError(t, err)
		cursor = b.Cursor
		for _, e := range b.Emails {
			got = append(got, e.MessageID)
		}
		cmds, turns := commands(p), p.Counts().Turns
		t.Logf("batch %d: %d emails, More %v, %d round trips: %q", n, len(b.Emails), b.More, turns, cmds)
		if n >= 2 && n <= 4 { // 40, 30 and 20 UIDs left over from the first search
			assert.EqualValues(t, 1, turns, "batch %d: one round trip", n)
			if assert.Len(t, cmds, 2, "batch %d", n) {
				assert.Contains(t, cmds[0], "BODY.PEEK[HEADER]", "batch %d: the next batch's headers", n)
				assert.Contains(t, cmds[1], "BODY.PEEK[]", "batch %d: this batch's bodies", n)
			}
		}
		if n == 2 {
			ids = append(ids, dcDeliverN(t, env, addr, "late", 1)...)
		}
		if !b.More {
			break
		}
	}
	assert.Equal(t, ids, got, "every message once, in order, the late one too")

	// Caught up: the next cycle finds nothing.
	p.ResetCounters()
	b := cycle(t, env, tg, provider.FetchRequest{Cursor: cursor, Max: 10})
	assert.Empty(t, b.Emails)
	assert.False(t, b.More)
}

// While the screen accepts every message, the bodies of the next batch are asked for
// before the engine has even stored this one: when batch n is screened, its bodies are
// already on their way. A batch whose screen refuses a message turns that off: for the
// batch after next when the next one is asked for as a batch starts, for the next one
// with Config.ScreenUsesSession (which asks once a batch is screened). Nothing is
// fetched twice or returned twice.
func TestDovecotBodiesFetchedAhead(t *testing.T) {
	env := testenv.MailServers(t)
	for _, mode := range []struct {
		name         string
		afterScreen  bool
		ahead, after []int // batches whose bodies were asked for before their screen, and not
	}{
		{"asked as a batch starts", false, []int{3, 4, 6}, []int{2, 5}},
		{"asked once a batch is screened", true, []int{2, 3, 5, 6}, []int{4}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			p := testenv.StartProxy(t, env.IMAPAddr, testenv.ProxyOptions{})
			addr := env.AddUser(t, "ahead")
			ids := dcDeliverN(t, env, addr, "ahead", 60)
			tg := proxied(t, env, p, addr)
			c, err := imapprov.NewDialer(imapprov.Config{ScreenUsesSession: mode.afterScreen}).DialConn(context.Background(), tg)
			require.NoError(t, err)
			defer c.Close()

			// bodyFetched reports whether the bodies of uids first to last were asked for.
			bodyFetched := func(first, last int) bool {
				fetched := bodyFetches(t, commands(p))
				for uid := first; uid <= last; uid++ {
					if fetched[uid] == 0 {
						return false
					}
				}
				return true
			}
			var got []string
			var cursor []byte
			for n := 1; n <= 6; n++ {
				first, last := 10*(n-1)+1, 10*n
				screen := func(_ context.Context, headers []*crmsync.Email) ([]bool, error) {
					switch {
					case slices.Contains(mode.ahead, n):
						assert.Eventually(t, func() bool { return bodyFetched(first, last) }, 5*time.Second, 5*time.Millisecond,
							"batch %d: its bodies were asked for before its screen", n)
					case slices.Contains(mode.after, n):
						assert.False(t, bodyFetched(first, last), "batch %d: no bodies asked for before its screen", n)
					}
					ok := make([]bool, len(headers))
					for i := range ok {
						ok[i] = !(n == 3 && i == 0) // batch 3 refuses a message
					}
					return ok, nil
				}
				b, err := c.FetchIncoming(dcCtx(t), provider.FetchRequest{Cursor: cursor, Max: 10, Screen: screen})
				require.NoError(t, err)
				cursor = b.Cursor
				for _, e := range b.Emails {
					got = append(got, e.MessageID)
				}
				if !b.More {
					break
				}
			}
			want := slices.Delete(slices.Clone(ids), 20, 21) // batch 3's first message was refused
			assert.Equal(t, want, got, "every accepted message once, in order")
			fetched := bodyFetches(t, commands(p))
			for uid := 1; uid <= len(ids); uid++ {
				if uid == 21 {
					continue // refused: its body may or may not have come ahead
				}
				assert.Equal(t, 1, fetched[uid], "UID %d: body fetched once", uid)
			}
		})
	}
}

// bodyFetches counts, per UID, the FETCHes of whole messages among cmds that asked
// for it.
func bodyFetches(t *testing.T, cmds []string) map[int]int {
	fetched := map[int]int{}
	for _, cmd := range cmds {
		set, ok := strings.CutPrefix(cmd, "UID FETCH ")
		if !ok || !strings.HasSuffix(cmd, "BODY.PEEK[])") {
			continue
		}
		set, _, _ = strings.Cut(set, " ")
		for _, r := range strings.Split(set, ",") {
			lo, hi, _ := strings.Cut(r, ":")
			a, err := strconv.Atoi(lo)
			require.NoError(t, err, cmd)
			b := a
			if hi != "" {
				b, err = strconv.Atoi(hi)
				require.NoError(t, err, cmd)
			}
			for uid := a; uid <= b; uid++ {
				fetched[uid]++
			}
		}
	}
	return fetched
}

// Config.PrefetchBytes bounds what is kept of the bodies fetched ahead: the messages
// past it are dropped and fetched again by their batch, and nothing is lost or doubled.
func TestDovecotPrefetchBound(t *testing.T) {
	env := testenv.MailServers(t)
	p := testenv.StartProxy(t, env.IMAPAddr, testenv.ProxyOptions{})
	addr := env.AddUser(t, "bound")
	ids := dcDeliverN(t, env, addr, "bound", 40)
	tg := proxied(t, env, p, addr)
	c, err := imapprov.NewDialer(imapprov.Config{PrefetchBytes: 2000}).DialConn(context.Background(), tg)
	require.NoError(t, err)
	defer c.Close()
	var got []string
	var cursor []byte
	for range 10 {
		b, err := c.FetchIncoming(dcCtx(t), provider.FetchRequest{Cursor: cursor, Max: 10})
		require.NoError(t, err)
		require.Empty(t, b.Failed)
		for _, e := range b.Emails {
			got = append(got, e.MessageID)
		}
		cursor = b.Cursor
		if !b.More {
			break
		}
	}
	assert.Equal(t, ids, got, "every message once, in order")
	twice := 0
	for _, n := range bodyFetches(t, commands(p)) {
		if n > 1 {
			twice++
		}
	}
	assert.Positive(t, twice, "messages past the bound were fetched again by their batch")
}
