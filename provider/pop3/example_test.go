package pop3_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/pop3"
)

// The client on its own: log in over STLS and list the maildrop, leaving it as it is.
func ExampleClient() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := pop3.Dial(ctx, "pop.example.test:110")
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	cl.Timeout = 30 * time.Second // no answer for this long fails the command
	if err := cl.StartTLS(ctx, nil); err != nil {
		log.Fatal(err)
	}
	if err := cl.User(ctx, "ann@example.test"); err != nil {
		log.Fatal(err)
	}
	if err := cl.Pass(ctx, "secret"); err != nil {
		log.Fatal(err) // an *pop3.Error; its Code is "AUTH" when the password is wrong
	}
	uids, err := cl.Uidl(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, u := range uids {
		head, err := cl.Top(ctx, u.Number, 0)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: %d header bytes\n", u.UID, len(head))
	}
	if err := cl.Quit(ctx); err != nil {
		log.Fatal(err)
	}
}

// Reading the whole maildrop in few round trips: RetrMany pipelines its RETR commands
// when the server's capabilities list PIPELINING, so ask for them first.
func ExampleClient_RetrMany() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cl, err := pop3.DialTLS(ctx, "pop.example.test:995", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	caps, err := cl.Capabilities(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pipelined:", caps.Has("PIPELINING"))
	if err := cl.AuthPlain(ctx, "ann@example.test", "secret"); err != nil {
		log.Fatal(err)
	}
	sizes, err := cl.List(ctx) // the sizes size the buffers the messages are read into
	if err != nil {
		log.Fatal(err)
	}
	err = cl.RetrMany(ctx, sizes, func(i int, msg []byte, err error) error {
		if err != nil {
			// This message only: another session deleted it, say. The rest are read.
			fmt.Printf("message %d: %v\n", sizes[i].Number, err)
			return nil
		}
		fmt.Printf("message %d: %d bytes\n", sizes[i].Number, len(msg))
		return nil
	})
	if err != nil {
		log.Fatal(err) // the connection broke, or the context ended: it is closed
	}
	if err := cl.Quit(ctx); err != nil {
		log.Fatal(err)
	}
}

// The provider: a Dialer for POP3 profiles. Outgoing email goes through the SMTP
// sender of provider/smtp, with the profile's outgoing endpoint.
func ExampleNewDialer() {
	d := pop3.NewDialer(pop3.Config{
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12},
		LocalName: "crm.example.test", // for SMTP EHLO
	})
	profile := &crmsync.ServerProfile{
		ID: "pop3", Kind: crmsync.ServerPOP3,
		Incoming: crmsync.Endpoint{Host: "pop.example.test", Port: 995, Security: crmsync.SecurityTLS},
		Outgoing: crmsync.Endpoint{Host: "smtp.example.test", Port: 587, Security: crmsync.SecuritySTARTTLS},
	}
	mailbox := &crmsync.Mailbox{ID: "ann", Address: "ann@example.test",
		Credentials: crmsync.Credentials{Username: "ann@example.test", Password: "secret"}}

	ctx := context.Background()
	p, err := d.Dial(ctx, provider.Target{Profile: profile, Mailbox: mailbox})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	var cursor []byte // the last committed batch's; nil the first time
	b, err := p.(provider.IncomingMail).FetchIncoming(ctx, provider.FetchRequest{Cursor: cursor, Max: 50})
	if err != nil {
		log.Fatal(err) // classified: crmsync.KindOf(err) says what to do
	}
	fmt.Println(len(b.Emails), "new messages; more:", b.More)
}
