package gmail_test

import (
	"context"
	"log"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/endpoints"

	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/provider/gmail"
	"github.com/crmsync/crmsync/syncer"
)

// A host wires the Gmail provider into its engine: its OAuth client, a Store to save rotated refresh
// tokens, and a profile with Gmail's endpoints. Mailboxes get their refresh token from the user's consent
// (see examples/gmail). Given the gmail Dialer itself, the engine takes each profile's Throttler from it.
func ExampleNewDialer() {
	store := memstore.New()
	endpoint := endpoints.Google
	endpoint.AuthStyle = oauth2.AuthStyleInParams
	dialer, err := gmail.NewDialer(gmail.Config{
		OAuth2: &oauth2.Config{
			ClientID: "….apps.googleusercontent.com", ClientSecret: "…",
			Endpoint: endpoint, Scopes: []string{gmail.Scope},
			RedirectURL: "https://crm.example.com/oauth2/callback",
		},
		Tokens: gmail.StoreTokenSaver{Store: store},
	})
	if err != nil {
		log.Fatal(err)
	}
	eng, err := syncer.New(syncer.Config{Store: store, Dialer: dialer})
	if err != nil {
		log.Fatal(err)
	}
	profile := gmail.NewProfile("gmail", "Company Gmail")
	profile.OwnerID = "admin"
	if err := eng.PutProfile(context.Background(), profile); err != nil {
		log.Fatal(err)
	}
}
