package filter

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

type verdict struct {
	track  bool
	reason Reason
}

var (
	dup          = verdict{false, ReasonDuplicate}
	corrMatch    = verdict{true, ReasonCorrelationMatch}
	noCorr       = verdict{false, ReasonNoCorrelationMatch}
	acceptAll    = verdict{true, ReasonAcceptAll}
	senderMatch  = verdict{true, ReasonSenderMatch}
	internal     = verdict{false, ReasonInternalEmail}
	invalidSnd   = verdict{false, ReasonInvalidSender}
	noRecipients = verdict{false, ReasonNoRecipientMatch}
)

// TestIncomingOptions runs every incoming option over the same messages.
func TestIncomingOptions(t *testing.T) {
	tests := []struct {
		option crmsync.IncomingOption
		want   map[string]verdict
	}{
		{crmsync.IncomingReplies, map[string]verdict{
			"reply by in-reply-to":       corrMatch,
			"reply by references":        corrMatch,
			"reply by token":             corrMatch,
			"reply by thread-index":      corrMatch,
			"from contact":               noCorr,
			"from lead":                  noCorr,
			"from account":               noCorr,
			"from other record":          noCorr,
			"from colleague":             noCorr,
			"from stranger":              noCorr,
			"invalid sender":             noCorr,
			"duplicate":                  dup,
			"tracked by another mailbox": noCorr,
		}},
		{crmsync.IncomingAll, map[string]verdict{
			"reply by in-reply-to":       acceptAll,
			"reply by references":        acceptAll,
			"reply by token":             acceptAll,
			"reply by thread-index":      acceptAll,
			"from contact":               acceptAll,
			"from lead":                  acceptAll,
			"from account":               acceptAll,
			"from other record":          acceptAll,
			"from colleague":             acceptAll,
			"from stranger":              acceptAll,
			"invalid sender":             acceptAll,
			"duplicate":                  dup,
			"tracked by another mailbox": acceptAll,
		}},
		{crmsync.IncomingFromCRM, map[string]verdict{
			"reply by in-reply-to":       senderMatch,
			"reply by references":        invalidSnd,
			"reply by token":             invalidSnd,
			"reply by thread-index":      invalidSnd,
			"from contact":               senderMatch,
			"from lead":                  senderMatch,
			"from account":               senderMatch,
			"from other record":          invalidSnd,
			"from colleague":             internal,
			"from stranger":              invalidSnd,
			"invalid sender":             invalidSnd,
			"duplicate":                  dup,
			"tracked by another mailbox": senderMatch,
		}},
		{crmsync.IncomingFromEnabled, map[string]verdict{
			"reply by in-reply-to":       senderMatch,
			"reply by references":        invalidSnd,
			"reply by token":             invalidSnd,
			"reply by thread-index":      invalidSnd,
			"from contact":               senderMatch,
			"from lead":                  senderMatch,
			"from account":               senderMatch,
			"from other record":          senderMatch,
			"from colleague":             internal,
			"from stranger":              invalidSnd,
			"invalid sender":             invalidSnd,
			"duplicate":                  dup,
			"tracked by another mailbox": senderMatch,
		}},
		{crmsync.IncomingNone, map[string]verdict{
			"reply by in-reply-to":       noRecipients,
			"reply by references":        noRecipients,
			"reply by token":             noRecipients,
			"reply by thread-index":      noRecipients,
			"from contact":               noRecipients,
			"from lead":                  noRecipients,
			"from account":               noRecipients,
			"from other record":          noRecipients,
			"from colleague":             noRecipients,
			"from stranger":              noRecipients,
			"invalid sender":             noRecipients,
			"duplicate":                  dup,
			"tracked by another mailbox": noRecipients,
		}},
	}
	for _, tt := range tests {
		t.Run(optionName(tt.option), func(t *testing.T) {
			w := newWorld(t)
			ann := w.ann.Clone()
			ann.IncomingOption = tt.option
			w.mbs.Put(ann)
			s := w.screener(t, nil)
			ms := w.messages()
			require.Len(t, tt.want, len(ms), "every message has an expectation")

			ds, err := s.Decide(context.Background(), ann, headers(ms))
			require.NoError(t, err)
			require.Len(t, ds, len(ms))
			for i, m := range ms {
				want, ok := tt.want[m.name]
				require.True(t, ok, m.name)
				assert.Equal(t, want, verdict{ds[i].Track, ds[i].Reason}, "%s: %v", m.name, ds[i])
				if ds[i].Reason != ReasonDuplicate && ds[i].Reason != ReasonNoRecipientMatch {
					assert.Equal(t, "mb-ann", ds[i].Mailbox, m.name)
				}
			}

			bools, err := s.Screen(context.Background(), ann, headers(ms))
			require.NoError(t, err)
			for i := range ms {
				assert.Equal(t, ds[i].Track, bools[i])
			}
		})
	}
}

func optionName(o crmsync.IncomingOption) string {
	return map[crmsync.IncomingOption]string{
		crmsync.IncomingReplies: "replies", crmsync.IncomingAll: "all", crmsync.IncomingFromCRM: "from CRM",
		crmsync.IncomingFromEnabled: "from enabled", crmsync.IncomingNone: "none",
	}[o]
}

func TestDecisionRecordsTheMatch(t *testing.T) {
	w := newWorld(t)
	s := w.screener(t, nil)
	ms := w.messages()
	ds, err := s.Decide(context.Background(), w.ann, headers(ms[:4]))
	require.NoError(t, err)
	want := []struct {
		method crmsync.Correlation
		email  string
	}{
		{crmsync.CorrelationInReplyTo, "e-offer"},
		{crmsync.CorrelationInReplyTo, "e-meeting"},
		{crmsync.CorrelationTrackingToken, "e-offer"},
		{crmsync.CorrelationConversationIndex, "e-offer"},
	}
	for i, w := range want {
		assert.Equal(t, w.method, ds[i].Match.Method, ms[i].name)
		require.NotNil(t, ds[i].Match.Email, ms[i].name)
		assert.Equal(t, w.email, ds[i].Match.Email.ID, ms[i].name)
	}

	// Options that do not need correlation skip it.
	ann := w.ann.Clone()
	ann.IncomingOption = crmsync.IncomingAll
	ds, err = s.Decide(context.Background(), ann, headers(ms[:1]))
	require.NoError(t, err)
	assert.Equal(t, crmsync.CorrelationSkipped, ds[0].Match.Method)
}

func TestAnyRecipientMailboxAccepts(t *testing.T) {
	w := newWorld(t)
	ann := w.ann.Clone()
	ann.IncomingOption = crmsync.IncomingNone
	bob := w.bob.Clone()
	bob.IncomingOption = crmsync.IncomingFromCRM
	support := w.support.Clone()
	support.IncomingOption = crmsync.IncomingAll
	w.mbs.Put(ann)
	w.mbs.Put(bob)
	w.mbs.Put(support)
	s := w.screener(t, nil)

	mk := func(from string, to ...string) *crmsync.Email {
		e := &crmsync.Email{MessageID: from + "/" + to[0], From: addr(from), Subject: "x"}
		for _, a := range to {
			e.To = append(e.To, addr(a))
		}
		return e
	}
	tests := []struct {
		name    string
		email   *crmsync.Email
		want    verdict
		mailbox string
	}{
		{"only ann, who tracks nothing", mk("carl@customer.example", "ann@crm.example"), noRecipients, ""},
		{"bob accepts the contact", mk("carl@customer.example", "ann@crm.example", "BOB@crm.example"), senderMatch, "mb-bob"},
		{"bob refuses a stranger", mk("someone@web.example", "ann@crm.example", "bob@crm.example"), invalidSnd, "mb-bob"},
		{"the queue accepts all", mk("someone@web.example", "ann@crm.example", "bob@crm.example", "support@crm.example"), acceptAll, "mb-support"},
		{"recipient in cc", &crmsync.Email{MessageID: "cc", From: addr("x@web.example"),
			To: []crmsync.Address{addr("ann@crm.example")}, Cc: []crmsync.Address{addr("support@crm.example")}}, acceptAll, "mb-support"},
		{"recipient in bcc", &crmsync.Email{MessageID: "bcc", From: addr("x@web.example"),
			Bcc: []crmsync.Address{addr("support@crm.example")}}, acceptAll, "mb-support"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds, err := s.Decide(context.Background(), ann, []*crmsync.Email{tt.email})
			require.NoError(t, err)
			assert.Equal(t, tt.want, verdict{ds[0].Track, ds[0].Reason})
			assert.Equal(t, tt.mailbox, ds[0].Mailbox)
		})
	}
}

func TestBypassAndDuplicates(t *testing.T) {
	w := newWorld(t)
	ann := w.ann.Clone()
	ann.IncomingOption = crmsync.IncomingNone
	ann.TrackedFolders = []string{"INBOX/Projects"}
	rules, err := NewFolderRules(FolderRule{Folder: "INBOX/Contoso", RegardingID: "acct-contoso"})
	require.NoError(t, err)
	s := w.screener(t, func(c *Config) {
		c.Manual = func(e *crmsync.Email) bool { return e.Subject == "please track" }
		c.Folders = func(mb *crmsync.Mailbox) *FolderRules {
			if mb.ID == "mb-ann" {
				return rules
			}
			return nil
		}
	})
	hs := []*crmsync.Email{
		{MessageID: "m1", Subject: "please track", From: addr("x@web.example")},
		{MessageID: "m2", Folder: "INBOX/Projects", From: addr("x@web.example")},
		{MessageID: "m3", Folder: "inbox/Contoso", From: addr("x@web.example")},
		{MessageID: "seen@customer.example", Subject: "please track"},
		{MessageID: "m5", Folder: "INBOX/Other", From: addr("x@web.example")},
		{Subject: "no message id", From: addr("x@web.example")},
	}
	ds, err := s.Decide(context.Background(), ann, hs)
	require.NoError(t, err)
	assert.Equal(t, []verdict{
		{true, ReasonManual}, {true, ReasonFolder}, {true, ReasonFolder}, dup, noRecipients, noRecipients,
	}, verdicts(ds))

	ds, err = s.DecideInputs(context.Background(), ann, []Input{
		{Email: &crmsync.Email{MessageID: "m6"}, Bypass: BypassManual},
		{Email: &crmsync.Email{MessageID: "m7"}, Bypass: BypassFolder},
		{Email: &crmsync.Email{MessageID: "seen@customer.example"}, Bypass: BypassManual},
	})
	require.NoError(t, err)
	assert.Equal(t, []verdict{{true, ReasonManual}, {true, ReasonFolder}, dup}, verdicts(ds))
}

func TestOneActivity(t *testing.T) {
	w := newWorld(t)
	ann := w.ann.Clone()
	ann.IncomingOption = crmsync.IncomingAll
	h := []*crmsync.Email{{MessageID: "bobs@customer.example", From: addr("carl@customer.example")}}

	ds, err := w.screener(t, nil).Decide(context.Background(), ann, h)
	require.NoError(t, err)
	assert.Equal(t, acceptAll, verdict{ds[0].Track, ds[0].Reason}, "two activities by default")

	ds, err = w.screener(t, func(c *Config) { c.OneActivity = true }).Decide(context.Background(), ann, h)
	require.NoError(t, err)
	assert.Equal(t, dup, verdict{ds[0].Track, ds[0].Reason})
}

func TestScreenBatchesLookups(t *testing.T) {
	for _, opt := range []crmsync.IncomingOption{crmsync.IncomingReplies, crmsync.IncomingFromCRM} {
		t.Run(optionName(opt), func(t *testing.T) {
			w := newWorld(t)
			ann := w.ann.Clone()
			ann.IncomingOption = opt
			w.mbs.Put(ann)
			s := w.screener(t, func(c *Config) { c.Correlation.SmartMatching = true })
			var hs []*crmsync.Email
			for range 10 {
				hs = append(hs, headers(w.messages())...)
			}
			hs[0].Cc = []crmsync.Address{addr("bob@crm.example")}
			hs[1].Cc = []crmsync.Address{addr("support@crm.example")}
			_, err := s.Screen(context.Background(), ann, hs)
			require.NoError(t, err)
			assert.Equal(t, int32(1), w.index.byID.Load())
			assert.Equal(t, int32(1), w.mbs.calls.Load())
			if opt == crmsync.IncomingReplies {
				assert.Equal(t, int32(1), w.index.byToken.Load())
				assert.Equal(t, int32(1), w.index.byConv.Load())
				assert.Equal(t, int32(1), w.index.bySubject.Load())
				assert.Equal(t, int32(0), w.dir.calls.Load())
			} else {
				assert.Equal(t, int32(0), w.index.byToken.Load(), "no correlation for a sender-based option")
				assert.Equal(t, int32(1), w.dir.calls.Load())
			}
		})
	}
}

func TestScreenErrors(t *testing.T) {
	w := newWorld(t)
	w.index.err = errors.New("database down")
	_, err := w.screener(t, nil).Screen(context.Background(), w.ann, headers(w.messages()))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "mb-ann")
	assert.Contains(t, err.Error(), "database down")

	_, err = NewScreener(Config{})
	var ve *crmsync.ValidationError
	assert.True(t, errors.As(err, &ve))
	_, err = NewScreener(Config{Index: w.index, Correlation: CorrelationConfig{Token: TokenConfig{UserDigits: 99}}})
	assert.True(t, errors.As(err, &ve))
	_, err = NewScreener(Config{Index: w.index, MaxMatches: -1})
	assert.True(t, errors.As(err, &ve))
}

func TestScreenWithoutOptionalParts(t *testing.T) {
	// Only an EmailIndex (as a crmstore.Store gives): no token, conversation or smart
	// lookups, no directory, no recipients' mailboxes.
	w := newWorld(t)
	s, err := NewScreener(Config{Index: onlyMessageIDs{w.index.MemIndex}})
	require.NoError(t, err)
	ms := w.messages()
	ds, err := s.Decide(context.Background(), w.ann, headers(ms))
	require.NoError(t, err)
	got := map[string]verdict{}
	for i, m := range ms {
		got[m.name] = verdict{ds[i].Track, ds[i].Reason}
	}
	assert.Equal(t, corrMatch, got["reply by in-reply-to"])
	assert.Equal(t, corrMatch, got["reply by references"])
	assert.Equal(t, noCorr, got["reply by token"], "no token lookup")
	assert.Equal(t, noCorr, got["reply by thread-index"], "no conversation lookup")
	assert.Equal(t, dup, got["duplicate"])

	ann := w.ann.Clone()
	ann.IncomingOption = crmsync.IncomingFromCRM
	ds, err = s.Decide(context.Background(), ann, headers(ms))
	require.NoError(t, err)
	assert.Equal(t, invalidSnd, verdict{ds[4].Track, ds[4].Reason}, "no directory: no sender resolves")
}

type onlyMessageIDs struct{ x *MemIndex }

func (o onlyMessageIDs) EmailsByMessageID(ctx context.Context, ids []string) ([]*crmsync.Email, error) {
	return o.x.EmailsByMessageID(ctx, ids)
}

func verdicts(ds []Decision) []verdict {
	out := make([]verdict, len(ds))
	for i, d := range ds {
		out[i] = verdict{d.Track, d.Reason}
	}
	return out
}

func TestReasonStrings(t *testing.T) {
	for r := ReasonUnknown; r <= ReasonFolder; r++ {
		assert.NotContains(t, r.String(), "reason(")
	}
	assert.Equal(t, "reason(99)", Reason(99).String())
	assert.Equal(t, "track (accept all)", Decision{Track: true, Reason: ReasonAcceptAll}.String())
	assert.Equal(t, "skip (duplicate)", Decision{Reason: ReasonDuplicate}.String())
}
