package filter

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

func newCorrelator(t *testing.T, cfg CorrelationConfig, emails ...*crmsync.Email) *Correlator {
	t.Helper()
	x, err := NewMemIndex(cfg)
	require.NoError(t, err)
	for _, e := range emails {
		x.Add(e)
	}
	c, err := NewCorrelator(x, cfg, fixedClock{testNow})
	require.NoError(t, err)
	return c
}

func correlateOne(t *testing.T, c *Correlator, e *crmsync.Email) Match {
	t.Helper()
	ms, err := c.Correlate(context.Background(), &crmsync.Mailbox{ID: "mb-ann"}, []*crmsync.Email{e})
	require.NoError(t, err)
	return ms[0]
}

func TestCorrelationOrder(t *testing.T) {
	root := NewThreadIndex(testNow)
	byID := &crmsync.Email{ID: "by-id", MessageID: "a@crm", Subject: "x", CreatedAt: testNow}
	byToken := &crmsync.Email{ID: "by-token", MessageID: "b@crm", Subject: "y CRM:0001002", CreatedAt: testNow}
	byConv := &crmsync.Email{ID: "by-conv", MessageID: "c@crm", Subject: "z", ThreadIndex: root, CreatedAt: testNow}
	c := newCorrelator(t, CorrelationConfig{}, byID, byToken, byConv)

	all := &crmsync.Email{MessageID: "new", InReplyTo: "a@crm", Subject: "RE: y CRM:0001002", ThreadIndex: childOf(root)}
	m := correlateOne(t, c, all)
	assert.Equal(t, crmsync.CorrelationInReplyTo, m.Method, "in-reply-to first")
	assert.Equal(t, "by-id", m.Email.ID)
	assert.Equal(t, "a@crm", m.Key)

	all.InReplyTo = "unknown@x"
	m = correlateOne(t, c, all)
	assert.Equal(t, crmsync.CorrelationTrackingToken, m.Method, "then the token")
	assert.Equal(t, "CRM:0001002", m.Key)

	all.Subject = "RE: y"
	m = correlateOne(t, c, all)
	assert.Equal(t, crmsync.CorrelationConversationIndex, m.Method, "then the conversation")
	assert.Equal(t, "by-conv", m.Email.ID)

	all.ThreadIndex = ""
	m = correlateOne(t, c, all)
	assert.Equal(t, crmsync.CorrelationNone, m.Method)
	assert.False(t, m.Matched())
	assert.Equal(t, "", m.RegardingID())
}

func TestCorrelationReferencesNewestFirst(t *testing.T) {
	c := newCorrelator(t, CorrelationConfig{},
		&crmsync.Email{ID: "old", MessageID: "1@crm"}, &crmsync.Email{ID: "new", MessageID: "2@crm"})
	m := correlateOne(t, c, &crmsync.Email{MessageID: "3", References: []string{"1@crm", "2@crm", "gone@x"}})
	assert.Equal(t, crmsync.CorrelationInReplyTo, m.Method)
	assert.Equal(t, "new", m.Email.ID)
}

func TestCorrelationMethodsTurnedOff(t *testing.T) {
	root := NewThreadIndex(testNow)
	emails := []*crmsync.Email{
		{ID: "t", MessageID: "t@crm", Subject: "y CRM:0001002"},
		{ID: "c", MessageID: "c@crm", ThreadIndex: root},
	}
	c := newCorrelator(t, CorrelationConfig{NoTrackingTokens: true, NoConversationIndex: true}, emails...)
	assert.Equal(t, crmsync.CorrelationNone, correlateOne(t, c, &crmsync.Email{Subject: "RE: y CRM:0001002"}).Method)
	assert.Equal(t, crmsync.CorrelationNone, correlateOne(t, c, &crmsync.Email{ThreadIndex: childOf(root)}).Method)
}

func TestCorrelationPicks(t *testing.T) {
	root := NewThreadIndex(testNow)
	child := childOf(root)
	t.Run("prefers the nearest ancestor in the conversation", func(t *testing.T) {
		c := newCorrelator(t, CorrelationConfig{},
			&crmsync.Email{ID: "root", MessageID: "r@crm", ThreadIndex: root, CreatedAt: testNow},
			&crmsync.Email{ID: "child", MessageID: "c@crm", ThreadIndex: child, CreatedAt: testNow.Add(-time.Hour)},
			&crmsync.Email{ID: "sibling", MessageID: "s@crm", ThreadIndex: childOf(child) + "", CreatedAt: testNow.Add(time.Hour)},
		)
		m := correlateOne(t, c, &crmsync.Email{MessageID: "g", ThreadIndex: childOf(child)})
		// "sibling" has the same Thread-Index as the message: not an ancestor.
		assert.Equal(t, "child", m.Email.ID)
	})
	t.Run("never the message itself", func(t *testing.T) {
		c := newCorrelator(t, CorrelationConfig{},
			&crmsync.Email{ID: "copy", MailboxID: "mb-bob", MessageID: "same", Subject: "x CRM:0001003"})
		m := correlateOne(t, c, &crmsync.Email{MessageID: "same", Subject: "x CRM:0001003"})
		assert.Equal(t, crmsync.CorrelationNone, m.Method)
	})
	t.Run("prefers a regarding, then the mailbox, then the newest", func(t *testing.T) {
		c := newCorrelator(t, CorrelationConfig{},
			&crmsync.Email{ID: "a", MailboxID: "mb-bob", MessageID: "id", CreatedAt: testNow},
			&crmsync.Email{ID: "b", MailboxID: "mb-ann", MessageID: "id", CreatedAt: testNow.Add(-time.Hour)},
			&crmsync.Email{ID: "c", MailboxID: "mb-bob", MessageID: "id", RegardingID: "opp", CreatedAt: testNow.Add(-2 * time.Hour)},
		)
		assert.Equal(t, "c", correlateOne(t, c, &crmsync.Email{InReplyTo: "id"}).Email.ID)
		c = newCorrelator(t, CorrelationConfig{},
			&crmsync.Email{ID: "a", MailboxID: "mb-bob", MessageID: "id", CreatedAt: testNow},
			&crmsync.Email{ID: "b", MailboxID: "mb-ann", MessageID: "id", CreatedAt: testNow.Add(-time.Hour)},
		)
		assert.Equal(t, "b", correlateOne(t, c, &crmsync.Email{InReplyTo: "id"}).Email.ID)
		c = newCorrelator(t, CorrelationConfig{},
			&crmsync.Email{ID: "a", MailboxID: "mb-bob", MessageID: "id", CreatedAt: testNow.Add(-time.Hour)},
			&crmsync.Email{ID: "b", MailboxID: "mb-bob", MessageID: "id", CreatedAt: testNow},
		)
		assert.Equal(t, "b", correlateOne(t, c, &crmsync.Email{InReplyTo: "id"}).Email.ID)
	})
}

func TestSmartMatching(t *testing.T) {
	offer := &crmsync.Email{ID: "offer", MessageID: "o@crm", Subject: "Offer for 20 chairs", RegardingID: "opp-1",
		From: addr("ann@crm.example"), To: []crmsync.Address{addr("carl@customer.example")},
		Cc: []crmsync.Address{addr("lena@lead.example")}, CreatedAt: testNow.Add(-24 * time.Hour)}
	old := &crmsync.Email{ID: "old", MessageID: "old@crm", Subject: "Status", From: addr("ann@crm.example"),
		To: []crmsync.Address{addr("carl@customer.example")}, CreatedAt: testNow.Add(-91 * 24 * time.Hour)}
	reply := func(subject string, from string, to ...string) *crmsync.Email {
		e := &crmsync.Email{MessageID: "new", Subject: subject, From: addr(from)}
		for _, a := range to {
			e.To = append(e.To, addr(a))
		}
		return e
	}
	tests := []struct {
		name  string
		email *crmsync.Email
		want  string
	}{
		{"same subject, two addresses", reply("RE: Offer for 20 chairs", "carl@customer.example", "ann@crm.example"), "offer"},
		{"prefixes, case and space ignored", reply("AW: WG: offer  for 20 CHAIRS", "Carl@Customer.example", "ann@crm.example"), "offer"},
		{"one address is not enough", reply("RE: Offer for 20 chairs", "carl@customer.example", "someone@web.example"), ""},
		{"another subject", reply("RE: Offer for 21 chairs", "carl@customer.example", "ann@crm.example"), ""},
		{"older than 90 days", reply("RE: Status", "carl@customer.example", "ann@crm.example"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCorrelator(t, CorrelationConfig{SmartMatching: true}, offer, old)
			m := correlateOne(t, c, tt.email)
			if tt.want == "" {
				assert.False(t, m.Matched())
				return
			}
			assert.Equal(t, crmsync.CorrelationSmartMatching, m.Method)
			assert.Equal(t, tt.want, m.Email.ID)
			assert.Equal(t, "opp-1", m.RegardingID())
		})
	}
	t.Run("off by default", func(t *testing.T) {
		c := newCorrelator(t, CorrelationConfig{}, offer)
		assert.False(t, correlateOne(t, c, tests[0].email).Matched())
	})
	t.Run("a wider window and a stricter count", func(t *testing.T) {
		c := newCorrelator(t, CorrelationConfig{SmartMatching: true, SmartWindow: 100 * 24 * time.Hour}, offer, old)
		assert.Equal(t, "old", correlateOne(t, c, tests[4].email).Email.ID)
		c = newCorrelator(t, CorrelationConfig{SmartMatching: true, MinRecipientMatches: 3}, offer)
		assert.False(t, correlateOne(t, c, tests[0].email).Matched())
		e := reply("RE: Offer for 20 chairs", "carl@customer.example", "ann@crm.example", "lena@lead.example")
		assert.True(t, correlateOne(t, c, e).Matched())
	})
}

func TestCorrelationConfigValidate(t *testing.T) {
	for name, cfg := range map[string]CorrelationConfig{
		"min 0 after default": {MinRecipientMatches: -1},
		"max under min":       {MinRecipientMatches: 5, MaxRecipientHashes: 3},
		"negative window":     {SmartWindow: -time.Hour},
		"bad token":           {Token: TokenConfig{CounterDigits: 12}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewMemIndex(cfg)
			var ve *crmsync.ValidationError
			assert.True(t, errors.As(err, &ve), "%v", err)
		})
	}
	_, err := NewCorrelator(nil, CorrelationConfig{}, nil)
	assert.Error(t, err)
}

func TestMemIndexKeys(t *testing.T) {
	x, err := NewMemIndex(CorrelationConfig{})
	require.NoError(t, err)
	root := NewThreadIndex(testNow)
	e := &crmsync.Email{ID: "e1", MessageID: "m1", Subject: "RE: Offer CRM:0001001", ThreadIndex: root, CreatedAt: testNow}
	x.Add(e)
	x.Add(&crmsync.Email{ID: "e2", Subject: "no message id"})
	assert.Equal(t, 2, x.Len())
	e.Subject = "changed" // Add kept a copy

	ctx := context.Background()
	byID, _ := x.EmailsByMessageID(ctx, []string{"m1", "m1", "m2"})
	require.Len(t, byID, 1)
	assert.Equal(t, "RE: Offer CRM:0001001", byID[0].Subject)
	byID[0].Subject = "mine" // lookups return copies
	byTok, _ := x.EmailsByTrackingToken(ctx, []string{"CRM:0001001", "CRM:0009999"})
	assert.Equal(t, []string{"RE: Offer CRM:0001001"}, subjects(byTok["CRM:0001001"]))
	assert.NotContains(t, byTok, "CRM:0009999")
	conv, _ := ConversationID(root)
	byConv, _ := x.EmailsByConversationID(ctx, []string{conv})
	assert.Len(t, byConv[conv], 1)
	h := NewSubjectNormalizer(nil, TokenConfig{}).SubjectHash("Offer")
	bySubj, _ := x.EmailsBySubjectHash(ctx, []string{h}, testNow)
	assert.Len(t, bySubj[h], 1)
	bySubj, _ = x.EmailsBySubjectHash(ctx, []string{h}, testNow.Add(time.Second))
	assert.Empty(t, bySubj)
}

func subjects(es []*crmsync.Email) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Subject)
	}
	return out
}
