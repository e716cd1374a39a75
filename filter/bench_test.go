package filter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
)

const (
	benchHeaders   = 20000
	benchStored    = 20000
	benchBatchSize = 50 // the engine's default batch
)

// benchSetup builds a CRM of benchStored outgoing emails and benchHeaders incoming
// headers: a third reply by In-Reply-To/References, a third carry a tracking token,
// a third are unrelated (some with a Thread-Index of an unknown conversation).
func benchSetup(b *testing.B) (*Screener, *crmsync.Mailbox, []*crmsync.Email) {
	b.Helper()
	cfg := CorrelationConfig{}
	idx, err := NewMemIndex(cfg)
	if err != nil {
		b.Fatal(err)
	}
	gen, err := NewTokenGen(cfg.Token, 7)
	if err != nil {
		b.Fatal(err)
	}
	gen.SetCounter(0)
	mb := &crmsync.Mailbox{ID: "mb-ann", Address: "ann@crm.example", Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "u-ann"}}
	mbs := NewMemMailboxes(mb, &crmsync.Mailbox{ID: "mb-bob", Address: "bob@crm.example",
		Owner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "u-bob"}, IncomingOption: crmsync.IncomingReplies})
	dir := NewMemDirectory()
	r := rand.New(rand.NewPCG(7, 7))
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	ids := make([]string, benchStored)
	tokens := make([]string, 0, 1000)
	for i := range benchStored {
		ids[i] = fmt.Sprintf("crm.%d.%08x@crm.example", i, r.Uint32())
		subject := fmt.Sprintf("Offer %d", i)
		if i < 1000 { // the token counter has 1,000 values with 3 digits
			tok := gen.Next()
			tokens = append(tokens, tok)
			subject = cfg.Token.Stamp(subject, tok)
		}
		idx.Add(&crmsync.Email{ID: fmt.Sprintf("e%d", i), MailboxID: "mb-ann", Direction: crmsync.DirectionOutgoing,
			MessageID: ids[i], Subject: subject, RegardingID: "opp", CreatedAt: now,
			From: addr("ann@crm.example"), To: []crmsync.Address{addr(fmt.Sprintf("c%d@customer.example", i%500))}})
		dir.Add(fmt.Sprintf("c%d@customer.example", i%500), Party{Kind: PartyContact, ID: fmt.Sprintf("c%d", i%500)})
	}
	hs := make([]*crmsync.Email, benchHeaders)
	for i := range hs {
		e := &crmsync.Email{
			MessageID: fmt.Sprintf("in.%d.%08x@customer.example", i, r.Uint32()),
			From:      addr(fmt.Sprintf("c%d@customer.example", r.IntN(1000))),
			To:        []crmsync.Address{addr("ann@crm.example")},
			Subject:   fmt.Sprintf("RE: Offer %d", r.IntN(benchStored)),
			Folder:    "INBOX",
		}
		if r.IntN(4) == 0 {
			e.Cc = []crmsync.Address{addr("bob@crm.example"), addr("x@web.example")}
		}
		switch i % 3 {
		case 0:
			e.InReplyTo = ids[r.IntN(benchStored)]
			e.References = []string{ids[r.IntN(benchStored)], e.InReplyTo}
		case 1:
			e.Subject = "AW: " + cfg.Token.Stamp(e.Subject, tokens[r.IntN(len(tokens))])
		default:
			e.Subject = fmt.Sprintf("Newsletter %d", i)
			if r.IntN(2) == 0 {
				e.ThreadIndex = NewThreadIndex(now)
			}
			if r.IntN(2) == 0 {
				e.InReplyTo = fmt.Sprintf("unknown.%d@elsewhere.example", i)
			}
		}
		hs[i] = e
	}
	s, err := NewScreener(Config{Index: idx, Directory: dir, Mailboxes: mbs, Clock: fixedClock{now}})
	if err != nil {
		b.Fatal(err)
	}
	return s, mb, hs
}

// BenchmarkScreenRepliesOnly measures decisions per second for the replies-only option
// (the default) over 20,000 headers screened in batches of 50, as the engine does,
// with MemIndex, MemDirectory and MemMailboxes. Target: 100,000 decisions/s per core
// (-cpu 1).
func BenchmarkScreenRepliesOnly(b *testing.B) {
	s, mb, hs := benchSetup(b)
	ctx := context.Background()
	tracked := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		tracked = 0
		for i := 0; i < len(hs); i += benchBatchSize {
			verdicts, err := s.Screen(ctx, mb, hs[i:min(i+benchBatchSize, len(hs))])
			if err != nil {
				b.Fatal(err)
			}
			for _, v := range verdicts {
				if v {
					tracked++
				}
			}
		}
	}
	b.ReportMetric(float64(len(hs))*float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(len(hs)*b.N), "ns/decision")
	b.ReportMetric(float64(tracked)/float64(len(hs)), "tracked-share")
}
