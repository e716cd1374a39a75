package imap_test

import (
	"context"
	"fmt"
	"log"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/imap"
	"github.com/crmsync/crmsync/provider/mailtest"
)

// Fetch the new mail of a mailbox, headers first, then send a reply with a copy in
// Sent, against an in-process server.
func Example() {
	srv, err := mailtest.NewServer(mailtest.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	for _, u := range []string{"ann@example.test", "bob@example.test"} {
		if err := srv.AddUser(u, "secret"); err != nil {
			log.Fatal(err)
		}
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	raw := "From: Bob <bob@example.test>\r\nTo: ann@example.test\r\nSubject: Quote?\r\nMessage-ID: <q1@example.test>\r\n\r\nCan you send a quote?\r\n"
	if err := srv.Deliver("ann@example.test", []byte(raw)); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	target := provider.Target{
		Profile: srv.Profile("p1"),
		Mailbox: &crmsync.Mailbox{ID: "m1", Address: "ann@example.test",
			Credentials: crmsync.Credentials{Username: "ann@example.test", Password: "secret"}},
	}
	conn, err := imap.NewDialer(imap.Config{}).Dial(ctx, target)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	in := conn.(provider.IncomingMail)
	batch, err := in.FetchIncoming(ctx, provider.FetchRequest{
		Screen: func(ctx context.Context, headers []*crmsync.Email) ([]bool, error) {
			verdicts := make([]bool, len(headers))
			for i, e := range headers {
				verdicts[i] = e.From.Email == "bob@example.test" // headers only: no body yet
			}
			return verdicts, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	e := batch.Emails[0]
	fmt.Printf("%s from %s: %q\n", e.MessageID, e.From.Email, e.TextBody)

	out := conn.(provider.OutgoingMail)
	receipt, err := out.Send(ctx, &crmsync.Email{
		MessageID: "reply-1@crm.example",
		InReplyTo: e.MessageID,
		To:        []crmsync.Address{e.From},
		Subject:   "Re: " + e.Subject,
		TextBody:  "Here it is.",
	})
	if err != nil {
		log.Fatal(err)
	}
	found, err := out.FindSent(ctx, receipt.MessageID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sent:", receipt.Copied, found, srv.SMTPAccepted())
	// Output:
	// q1@example.test from bob@example.test: "Can you send a quote?\r\n"
	// sent: true true 1
}
