package mailtest_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/crmsync/crmsync/provider/mailtest"
)

// A Server is a real IMAP and SMTP server on loopback: add users, start it, point a
// provider at its Profile, and close it when done.
func Example() {
	srv, err := mailtest.NewServer(mailtest.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	if err := srv.AddUser("ann@example.test", "secret"); err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}

	raw := "From: bob@example.test\r\nTo: ann@example.test\r\nSubject: Hello\r\nMessage-ID: <1@example.test>\r\n\r\nHi Ann!\r\n"
	if err := srv.Deliver("ann@example.test", []byte(raw)); err != nil {
		log.Fatal(err)
	}
	msgs, err := srv.Messages("ann@example.test", mailtest.Inbox)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(msgs), strings.Contains(string(msgs[0].Raw), "Subject: Hello"))

	p := srv.Profile("demo")
	fmt.Println(p.Kind, p.Incoming.Host, p.Incoming.Address() == srv.IMAPAddr())
	// Output:
	// 1 true
	// imap 127.0.0.1 true
}
