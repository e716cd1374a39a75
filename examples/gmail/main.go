// Command gmail shows how a host connects a user's Gmail mailbox to crmsync with OAuth 2.0: it sends the
// user to Google's consent screen, takes the code back on its callback, exchanges it for a refresh token,
// stores that token in the mailbox's credentials, and runs Test & Enable; from then on the engine signs in
// to Gmail's IMAP and SMTP with XOAUTH2 and refreshes access tokens on its own.
//
// Run as it is, it plays the whole story in process, against stand-ins for Google (an OAuth server from
// internal/testenv, and provider/gmail/gmailtest for Gmail's IMAP and SMTP): the "browser" follows the
// consent redirects, the mailbox is enabled, a message that arrives is tracked under its Gmail identity,
// and a CRM email goes out. Then it prints how to do the same with a real account:
//
//	go run ./examples/gmail
//
// With a Google Cloud OAuth client (a "Web application" whose authorized redirect URI is
// http://127.0.0.1:8080/oauth2/callback, on a project with the Gmail API scope https://mail.google.com/):
//
//	GMAIL_CLIENT_ID=… GMAIL_CLIENT_SECRET=… GMAIL_ADDRESS=you@gmail.com go run ./examples/gmail -google
//
// it serves http://127.0.0.1:8080/connect, which sends you to Google's consent screen; after you consent it
// enables the mailbox and prints the subjects of the messages the first incoming cycles track.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/endpoints"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/internal/testenv"
	"github.com/crmsync/crmsync/provider/gmail"
	"github.com/crmsync/crmsync/provider/gmail/gmailtest"
	"github.com/crmsync/crmsync/schedule"
	"github.com/crmsync/crmsync/syncer"
)

func main() {
	google := flag.Bool("google", false, "connect a real Gmail account (needs GMAIL_CLIENT_ID, GMAIL_CLIENT_SECRET and GMAIL_ADDRESS)")
	listen := flag.String("listen", "127.0.0.1:8080", "the `address` the -google mode serves on; its /oauth2/callback must be an authorized redirect URI")
	flag.Parse()
	if *google {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		if err := runGoogle(ctx, os.Stdout, *listen); err != nil {
			log.Fatal(err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := runDemo(ctx, os.Stdout); err != nil {
		log.Fatal(err)
	}
	fmt.Println()
	fmt.Println(instructions)
}

const instructions = `To connect a real Gmail account:
  1. In the Google Cloud console, create an OAuth client ID of type "Web application" with the authorized
     redirect URI http://127.0.0.1:8080/oauth2/callback, and add the scope https://mail.google.com/ to the
     consent screen (while the app is in testing, add your account as a test user).
  2. Run: GMAIL_CLIENT_ID=... GMAIL_CLIENT_SECRET=... GMAIL_ADDRESS=you@gmail.com go run ./examples/gmail -google
  3. Open http://127.0.0.1:8080/connect?mailbox=mb-1 and consent.`

// host is the part of a CRM backend that connects Gmail mailboxes: two HTTP handlers around the OAuth client.
type host struct {
	oauth  *oauth2.Config
	store  crmstore.Store
	engine *syncer.Engine
	out    io.Writer

	mu      sync.Mutex
	pending map[string]string // consent state → mailbox ID
	done    chan error        // the outcome of each callback
}

func newHost(cfg *oauth2.Config, store crmstore.Store, eng *syncer.Engine, out io.Writer) *host {
	return &host{oauth: cfg, store: store, engine: eng, out: out, pending: map[string]string{}, done: make(chan error, 1)}
}

// consentURL returns the URL of Google's consent screen for a mailbox. access_type=offline asks for a
// refresh token, which the engine needs to sign in while the user is away; prompt=consent asks for it again
// even when the user consented before (Google issues a refresh token only at consent). login_hint picks the
// account. The state ties the callback to this request.
func (h *host) consentURL(mailboxID, address string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	state := hex.EncodeToString(b[:])
	h.mu.Lock()
	h.pending[state] = mailboxID
	h.mu.Unlock()
	return h.oauth.AuthCodeURL(state, oauth2.AccessTypeOffline, oauth2.ApprovalForce,
		oauth2.SetAuthURLParam("login_hint", address))
}

// handleConnect sends the user of ?mailbox= to the consent screen.
func (h *host) handleConnect(w http.ResponseWriter, r *http.Request) {
	mb, err := h.store.Mailbox(r.Context(), r.URL.Query().Get("mailbox"))
	if err != nil {
		http.Error(w, "no such mailbox", http.StatusNotFound)
		return
	}
	u := h.consentURL(mb.ID, mb.Address)
	fmt.Fprintf(h.out, "Consent URL: %s\n", u)
	http.Redirect(w, r, u, http.StatusFound)
}

// handleCallback is the redirect URI: it exchanges the code for tokens, stores the refresh token in the
// mailbox's credentials, and runs Test & Enable.
func (h *host) handleCallback(w http.ResponseWriter, r *http.Request) {
	err := h.callback(r)
	if err != nil {
		http.Error(w, html.EscapeString(err.Error()), http.StatusBadRequest)
	} else {
		fmt.Fprintln(w, "Your Gmail mailbox is connected.")
	}
	select {
	case h.done <- err:
	default:
	}
}

func (h *host) callback(r *http.Request) error {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return fmt.Errorf("the user did not consent: %s", e)
	}
	h.mu.Lock()
	mailboxID, ok := h.pending[q.Get("state")]
	delete(h.pending, q.Get("state"))
	h.mu.Unlock()
	if !ok {
		return errors.New("unknown or reused state")
	}
	tok, err := h.oauth.Exchange(r.Context(), q.Get("code"))
	if err != nil {
		return fmt.Errorf("exchanging the code: %w", err)
	}
	if tok.RefreshToken == "" {
		return errors.New("no refresh token: ask for access_type=offline and prompt=consent")
	}
	// The refresh token is a secret: a real host's Store encrypts credentials (sqlstore does).
	if _, err := h.store.UpdateMailbox(r.Context(), mailboxID, func(m *crmsync.Mailbox) error {
		m.Credentials.RefreshToken = tok.RefreshToken
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(h.out, "Stored the refresh token in mailbox %s's credentials.\n", mailboxID)
	report, err := h.engine.TestAndEnable(r.Context(), mailboxID)
	if err != nil {
		return err
	}
	for _, res := range report.Results {
		fmt.Fprintf(h.out, "Test & Enable, %s: %s\n", res.Workload, outcome(res.Err))
	}
	return report.Err()
}

func outcome(err error) string {
	if err == nil {
		return "passed"
	}
	return "failed: " + err.Error()
}

// serve starts the host's handlers on ln; the returned function stops them.
func (h *host) serve(ln net.Listener) func() {
	mux := http.NewServeMux()
	mux.HandleFunc("/connect", h.handleConnect)
	mux.HandleFunc("/oauth2/callback", h.handleCallback)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}

// newMailbox maps an approved mailbox with incoming and outgoing email delivered by server-side sync. It has
// no credentials yet: the consent gives it its refresh token.
func newMailbox(ctx context.Context, eng *syncer.Engine, id, address, profileID string) (*crmsync.Mailbox, error) {
	m := &crmsync.Mailbox{
		ID: id, Address: address, ProfileID: profileID, Approval: crmsync.ApprovalApproved,
		Owner:    crmsync.Owner{Kind: crmsync.OwnerUser, ID: "user-" + id},
		Incoming: crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
		Outgoing: crmsync.WorkloadState{Method: crmsync.DeliveryServerSideSync},
	}
	_, err := eng.MapMailbox(ctx, m, syncer.MapOptions{})
	return m, err
}

// runDemo plays the story against local stand-ins for Google.
func runDemo(ctx context.Context, out io.Writer) error {
	oauthSrv, err := testenv.NewOAuthServer(testenv.OAuthConfig{})
	if err != nil {
		return err
	}
	defer oauthSrv.Close()
	gm, err := gmailtest.NewServer(gmailtest.Config{Validate: func(_ context.Context, user, token string) error {
		if u, ok := oauthSrv.Active(token); !ok || !strings.EqualFold(u, user) {
			return errors.New("invalid token")
		}
		return nil
	}})
	if err != nil {
		return err
	}
	defer gm.Close()
	const ann, bob = "ann@example.test", "bob@example.test"
	for _, u := range []string{ann, bob} {
		if err := gm.AddUser(u); err != nil {
			return err
		}
	}
	if err := gm.Start(); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cfg := &oauth2.Config{
		ClientID: oauthSrv.ClientID, ClientSecret: oauthSrv.ClientSecret, Scopes: []string{gmail.Scope},
		Endpoint:    oauth2.Endpoint{AuthURL: oauthSrv.AuthURL, TokenURL: oauthSrv.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: "http://" + ln.Addr().String() + "/oauth2/callback",
	}
	store := memstore.New()
	dialer, err := gmail.NewDialer(gmail.Config{OAuth2: cfg, Tokens: gmail.StoreTokenSaver{Store: store}})
	if err != nil {
		return err
	}
	eng, err := syncer.New(syncer.Config{Store: store, Dialer: dialer, PollInterval: 100 * time.Millisecond,
		Policy: schedule.Policy{Incoming: time.Second, Outgoing: time.Second}})
	if err != nil {
		return err
	}
	profile := gm.Profile("gmail") // a real host uses gmail.NewProfile: Gmail's endpoints
	profile.OwnerID = "admin"
	if err := eng.PutProfile(ctx, profile); err != nil {
		return err
	}
	if _, err := newMailbox(ctx, eng, "mb-ann", ann, profile.ID); err != nil {
		return err
	}
	h := newHost(cfg, store, eng, out)
	stop := h.serve(ln)
	defer stop()

	// The user clicks "Connect Gmail": the browser goes to the host, to the consent screen, and back.
	fmt.Fprintln(out, "ann connects her Gmail mailbox:")
	resp, err := http.Get("http://" + ln.Addr().String() + "/connect?mailbox=mb-ann")
	if err != nil {
		return err
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := <-h.done; err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	fmt.Fprintf(out, "The browser shows: %s", page)

	// The engine runs: a message arrives and is tracked, and a CRM email goes out.
	if err := gm.Deliver(ann, []byte("From: Customer <customer@elsewhere.test>\r\nTo: "+ann+
		"\r\nSubject: Order #1001\r\nMessage-ID: <order-1001@elsewhere.test>\r\n\r\nPlease confirm.\r\n")); err != nil {
		return err
	}
	e := &crmsync.Email{MailboxID: "mb-ann", Direction: crmsync.DirectionOutgoing, Status: crmsync.EmailDraft,
		From: crmsync.Address{Email: ann}, To: []crmsync.Address{{Email: bob}}, Subject: "Order #1001 confirmed",
		TextBody: "Confirmed, thank you."}
	if err := store.CreateEmail(ctx, e); err != nil {
		return err
	}
	if _, err := eng.SendEmail(ctx, e.ID, syncer.SendOptions{}); err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(context.WithoutCancel(ctx))
	for {
		in, err := store.EmailsByMessageID(ctx, []string{"order-1001@elsewhere.test"})
		if err != nil {
			return err
		}
		sent, err := store.Email(ctx, e.ID)
		if err != nil {
			return err
		}
		if len(in) == 1 && sent.Status == crmsync.EmailSent {
			fmt.Fprintf(out, "Tracked %q from %s as %s (its Gmail identity, X-GM-MSGID)\n", in[0].Subject, in[0].From.Email, in[0].ProviderID)
			fmt.Fprintf(out, "Sent %q to %s; Gmail filed it in Sent Mail (%d submitted)\n", sent.Subject, bob, gm.Submitted(ann))
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the engine: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	mb, err := store.Mailbox(ctx, "mb-ann")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Access token refreshes so far: %d; the refresh token stays in the mailbox's credentials (%v).\n",
		dialer.Refreshes("mb-ann"), mb.Credentials)
	return nil
}

// runGoogle connects a real Gmail account.
func runGoogle(ctx context.Context, out io.Writer, listen string) error {
	id, secret, address := os.Getenv("GMAIL_CLIENT_ID"), os.Getenv("GMAIL_CLIENT_SECRET"), os.Getenv("GMAIL_ADDRESS")
	if id == "" || secret == "" || address == "" {
		return errors.New("-google needs GMAIL_CLIENT_ID, GMAIL_CLIENT_SECRET and GMAIL_ADDRESS\n\n" + instructions)
	}
	endpoint := endpoints.Google
	endpoint.AuthStyle = oauth2.AuthStyleInParams
	cfg := &oauth2.Config{ClientID: id, ClientSecret: secret, Endpoint: endpoint, Scopes: []string{gmail.Scope},
		RedirectURL: (&url.URL{Scheme: "http", Host: listen, Path: "/oauth2/callback"}).String()}
	store := memstore.New()
	dialer, err := gmail.NewDialer(gmail.Config{OAuth2: cfg, Tokens: gmail.StoreTokenSaver{Store: store}})
	if err != nil {
		return err
	}
	obs := &tracked{out: out}
	eng, err := syncer.New(syncer.Config{Store: store, Dialer: dialer, Observer: obs})
	if err != nil {
		return err
	}
	profile := gmail.NewProfile("gmail", "Gmail")
	profile.OwnerID = "admin"
	if err := eng.PutProfile(ctx, profile); err != nil {
		return err
	}
	if _, err := newMailbox(ctx, eng, "mb-1", address, profile.ID); err != nil {
		return err
	}
	// Only mail received from now on is tracked (Test & Enable sets the mailbox's start date).
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	h := newHost(cfg, store, eng, out)
	stop := h.serve(ln)
	defer stop()
	fmt.Fprintf(out, "Open http://%s/connect?mailbox=mb-1 and consent with %s.\n", listen, address)
	select {
	case err := <-h.done:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(context.WithoutCancel(ctx))
	fmt.Fprintln(out, "Connected. Send a message to the account; the engine tracks it within a few minutes (Ctrl-C to stop).")
	<-ctx.Done()
	return nil
}

// tracked prints each incoming cycle's count.
type tracked struct {
	syncer.NoopObserver
	out io.Writer
}

// CycleFinished prints a failed cycle, or one that did something.
func (t *tracked) CycleFinished(c syncer.CycleInfo, o syncer.CycleOutcome) {
	if o.Err != nil {
		fmt.Fprintf(t.out, "%s cycle failed: %v\n", c.Workload, o.Err)
	} else if o.Items > 0 {
		fmt.Fprintf(t.out, "%s cycle: %d item(s)\n", c.Workload, o.Items)
	}
}
