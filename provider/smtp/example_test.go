package smtp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider/mailtest"
	"github.com/crmsync/crmsync/provider/smtp"
)

// Send an email, and tell from the error whether it may have gone out.
func ExampleSender_Send() {
	srv, err := mailtest.NewServer(mailtest.Config{TLS: mailtest.StartTLS})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	_ = srv.AddUser("ann@example.test", "secret")
	_ = srv.AddUser("bob@example.test", "secret")
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}

	s, err := smtp.NewSender(smtp.Config{
		Endpoint:    srv.Profile("p").Outgoing, // STARTTLS on the submission port
		Credentials: crmsync.Credentials{Username: "ann@example.test", Password: "secret"},
		TLSConfig:   &tls.Config{RootCAs: srv.RootCAs()},
		From:        crmsync.Address{Name: "Ann", Email: "ann@example.test"},
		Timeout:     30 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ctx := context.Background()
	for _, to := range []string{"bob@example.test", "nobody@example.test"} {
		receipt, raw, err := s.Send(ctx, &crmsync.Email{
			MessageID: "quote-" + strings.Split(to, "@")[0] + "@crm.example",
			To:        []crmsync.Address{{Email: to}},
			Subject:   "Your quote",
			TextBody:  "Here it is.",
		})
		switch {
		case err == nil:
			fmt.Println("sent", receipt.MessageID, len(raw) > 0)
		case errors.Is(err, smtp.ErrNotSubmitted):
			fmt.Println("not sent:", crmsync.KindOf(err)) // safe to send again (if the kind allows)
		default:
			fmt.Println("outcome unknown:", crmsync.KindOf(err)) // look for it before sending again
		}
	}
	// Output:
	// sent quote-bob@crm.example true
	// not sent: permanent
}
