package gmail_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/provider/gmail"
	"github.com/crmsync/crmsync/provider/imap"
	"github.com/crmsync/crmsync/provider/providertest"
	"github.com/crmsync/crmsync/schedule"
	"github.com/crmsync/crmsync/syncer"
)

// outcomes counts the engine's failed cycles and alerts.
type outcomes struct {
	syncer.NoopObserver
	mu     sync.Mutex
	failed int
	alerts []*crmsync.Alert
}

func (o *outcomes) CycleFinished(_ syncer.CycleInfo, out syncer.CycleOutcome) {
	if out.Err != nil {
		o.mu.Lock()
		o.failed++
		o.mu.Unlock()
	}
}

func (o *outcomes) AlertRaised(a *crmsync.Alert) {
	o.mu.Lock()
	o.alerts = append(o.alerts, a)
	o.mu.Unlock()
}

// TestBacklogDrainsOverDays runs the engine on a schedule.Fake for three days with 1,200 emails in Pending
// Send on a consumer account (500 messages a day): each day's share goes out as the rolling window frees,
// never more than 500 in any 24 hours, every email exactly once, and no cycle fails. The IMAP/SMTP side is
// providertest's fake behind the Gmail Conn, so the sending window, SendAllowance and the engine's outgoing
// cycle are what is tested.
func TestBacklogDrainsOverDays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		start := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
		clock := schedule.NewFake(start)
		fake := providertest.NewServer(providertest.ServerConfig{Clock: clock})
		var mu sync.Mutex
		var sends []time.Time
		fake.SetOnCall(func(_ string, op providertest.Op) {
			if op == providertest.OpSend {
				mu.Lock()
				sends = append(sends, clock.Now())
				mu.Unlock()
			}
		})
		d, err := gmail.NewDialer(gmail.Config{OAuth2: &oauth2.Config{}, IMAP: imap.Config{Clock: clock}})
		require.NoError(t, err)
		gmail.SetBase(d, fake.Dial)
		store := memstore.New()
		obs := &outcomes{}
		eng, err := syncer.New(syncer.Config{Store: store, Dialer: d, Clock: clock, Observer: obs})
		require.NoError(t, err)

		profile := gmail.NewProfile("gmail", "Gmail")
		profile.OwnerID = "admin"
		require.NoError(t, eng.PutProfile(ctx, profile))
		ann := &crmsync.Mailbox{ID: "mb-ann", Address: "ann@gmail.com", ProfileID: profile.ID,
			Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "ann"}, Approval: crmsync.ApprovalApproved,
			Credentials: crmsync.Credentials{RefreshToken: "unused by the fake"},
			Outgoing:    crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync}}
		_, err = eng.MapMailbox(ctx, ann, syncer.MapOptions{})
		require.NoError(t, err)
		fake.AddMailbox(ann.Address, "bob@example.test")

		const backlog = 1200
		for i := range backlog {
			e := &crmsync.Email{MailboxID: ann.ID, Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailDraft,
				From: crmsync.Address{Email: ann.Address}, To: []crmsync.Address{{Email: "bob@example.test"}},
				Subject: fmt.Sprintf("newsletter %d", i), TextBody: "hello"}
			require.NoError(t, store.CreateEmail(ctx, e))
			_, err := eng.SendEmail(ctx, e.ID, syncer.SendOptions{})
			require.NoError(t, err)
		}
		require.NoError(t, eng.Start(ctx))
		r, err := eng.TestAndEnable(ctx, ann.ID)
		require.NoError(t, err)
		require.NoError(t, r.Err())

		perDay := map[int]int{}
		for clock.Now().Before(start.Add(72 * time.Hour)) {
			synctest.Wait()
			clock.Advance(5 * time.Minute)
		}
		synctest.Wait()
		require.NoError(t, eng.Stop(ctx))

		mu.Lock()
		defer mu.Unlock()
		require.Len(t, sends, backlog, "every email went out")
		sort.Slice(sends, func(i, j int) bool { return sends[i].Before(sends[j]) })
		for i, at := range sends {
			perDay[int(at.Sub(start)/(24*time.Hour))]++
			// Never more than 500 in any rolling 24 hours: the 501st after any send is a day later.
			if i+gmail.ConsumerMessagesPerDay < len(sends) {
				assert.GreaterOrEqual(t, sends[i+gmail.ConsumerMessagesPerDay].Sub(at), 24*time.Hour, "send %d", i)
			}
		}
		assert.Equal(t, map[int]int{0: 500, 1: 500, 2: 200}, perDay)

		seen := map[string]bool{}
		for _, m := range fake.Submitted() {
			assert.False(t, seen[m.MessageID], "sent twice: %s", m.MessageID)
			seen[m.MessageID] = true
		}
		sent, err := store.ListEmails(ctx, crmstore.EmailQuery{MailboxID: ann.ID, Status: crmsync.EmailSent})
		require.NoError(t, err)
		assert.Len(t, sent, backlog, "all Sent in the CRM")
		for _, e := range sent {
			assert.Equal(t, 1, e.DeliveryAttempts, "email %s", e.ID)
		}
		obs.mu.Lock()
		defer obs.mu.Unlock()
		assert.Zero(t, obs.failed, "a backlog waits, it does not fail")
		assert.Empty(t, obs.alerts)
		assert.Zero(t, fake.Calls(providertest.OpFindSent), "no email was left with an unknown outcome")
	})
}
