package filter_test

import (
	"context"
	"fmt"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/filter"
)

// An outgoing CRM email gets a tracking token in its subject; the reply, whatever the
// mail client did to the subject, carries it back.
func ExampleTokenConfig_Stamp() {
	cfg := filter.TokenConfig{} // the defaults: "CRM", 3 user digits, 3 counter digits
	gen, err := filter.NewTokenGen(cfg, 1)
	if err != nil {
		panic(err)
	}
	gen.SetCounter(323)
	tok := gen.Next()
	subject := cfg.Stamp("Quote for 20 chairs", tok)
	fmt.Println(subject)

	for _, reply := range []string{
		"RE: " + subject,
		"AW: WG: Quote for 20 chairs crm:0001323",
		"=?UTF-8?B?UkU6IFF1b3RlIGZvciAyMCBjaGFpcnMgQ1JNOjAwMDEzMjM=?=", // RFC 2047 encoded
	} {
		found, ok := cfg.Find(reply)
		fmt.Println(found, ok)
	}
	// Output:
	// Quote for 20 chairs CRM:0001323
	// CRM:0001323 true
	// CRM:0001323 true
	// CRM:0001323 true
}

// A synchronization filter in the text syntax, evaluated in memory and translated to
// SQL.
func ExampleParse() {
	f, err := filter.Parse(crmsync.KindTask, `owner = @me and (status != "completed" or due >= today)`)
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 3, 10, 15, 0, 0, 0, time.UTC)
	env := filter.Env{Now: now, UserID: "u-ann"}
	done := &crmsync.Item{Kind: crmsync.KindTask, Task: &crmsync.Task{
		Subject: "Call Contoso", OwnerUserID: "u-ann", Completed: true, Due: now.AddDate(0, 0, -1)}}
	open := &crmsync.Item{Kind: crmsync.KindTask, Task: &crmsync.Task{Subject: "Send quote", OwnerUserID: "u-ann"}}
	fmt.Println(f.Match(done, env), f.Match(open, env))

	where, params, err := filter.ToSQL(f, filter.Postgres, filter.ColumnMap{
		"owner": "owner_id", "status": "status", "due": "due_at",
	}, env)
	if err != nil {
		panic(err)
	}
	fmt.Println(where)
	fmt.Println(params...)

	_, err = filter.Parse(crmsync.KindTask, `owner = @me and colour = "red"`)
	fmt.Println(err)
	// Output:
	// false true
	// owner_id = $1 AND (status <> $2 OR due_at >= $3)
	// u-ann completed 2026-03-10 00:00:00 +0000 UTC
	// filter: 1:17: task has no field "colour" (fields: completed, completed_at, due, owner, priority, status, subject)
}

// The screener as an engine uses it: a batch of headers, one verdict each.
func ExampleScreener_Decide() {
	ctx := context.Background()
	index, _ := filter.NewMemIndex(filter.CorrelationConfig{})
	index.Add(&crmsync.Email{ID: "e1", MailboxID: "mb-ann", Direction: crmsync.DirectionOutgoing,
		MessageID: "offer@crm.example", Subject: "Offer CRM:0001001", RegardingID: "opportunity-7"})
	s, err := filter.NewScreener(filter.Config{Index: index})
	if err != nil {
		panic(err)
	}
	ann := &crmsync.Mailbox{ID: "mb-ann", Address: "ann@crm.example", IncomingOption: crmsync.IncomingReplies}
	headers := []*crmsync.Email{
		{MessageID: "r1@customer.example", InReplyTo: "offer@crm.example", Subject: "RE: Offer"},
		{MessageID: "r2@customer.example", Subject: "AW: Offer CRM:0001001"},
		{MessageID: "n1@customer.example", Subject: "Newsletter"},
	}
	ds, err := s.Decide(ctx, ann, headers)
	if err != nil {
		panic(err)
	}
	for _, d := range ds {
		fmt.Println(d, d.Match.Method == crmsync.CorrelationNone, d.Match.RegardingID())
	}
	// Output:
	// track (correlation match) false opportunity-7
	// track (correlation match) false opportunity-7
	// skip (no correlation match) true
}
