package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file holds what tests of Gmail's OAuth 2.0 sign-in need: OAuthServer, an authorization server on
// loopback (token endpoint, token introspection, revocation, and an /authorize endpoint that consents at
// once), and OAuthMailServers, a private Dovecot whose oauth2 passdb asks that server whether an access token
// is valid, so that XOAUTH2 and OAUTHBEARER run for real over IMAP and SMTP submission.

// OAuthConfig configures an OAuthServer. Zero values take the documented defaults.
type OAuthConfig struct {
	// ClientID and ClientSecret are the one client the server knows. Defaults "crmsync-test-client" and a
	// random secret.
	ClientID     string
	ClientSecret string
	// AccessTokenLifetime is the lifetime of every access token it issues. Default one hour.
	AccessTokenLifetime time.Duration
	// RotateRefreshTokens makes every refresh issue a new refresh token and retire the one presented: the
	// retired one is then refused with invalid_grant.
	RotateRefreshTokens bool
	// Scope is granted to every grant. Default "https://mail.google.com/" (Gmail's IMAP and SMTP scope).
	Scope string
	// DefaultUser consents at /authorize when the request has no login_hint.
	DefaultUser string
}

// OAuthServer is an OAuth 2.0 authorization server for tests, serving HTTP on 127.0.0.1 from the moment it is
// made (like httptest.Server):
//
//   - /token (RFC 6749): the authorization_code and refresh_token grants; client authentication in the
//     Authorization header or the form. Access tokens expire after OAuthConfig.AccessTokenLifetime; with
//     OAuthConfig.RotateRefreshTokens every refresh also rotates the refresh token. A revoked grant, an unknown
//     or retired refresh token, or a used code is refused with 400 invalid_grant.
//   - /introspect (RFC 7662): POST token=… (or GET ?token=…, or the token as a Bearer Authorization) answers
//     {"active": true, "username": …, "email": …, "scope": …, "exp": …} or {"active": false}. This is what
//     Dovecot's oauth2 passdb calls with introspection_mode = post.
//   - /revoke (RFC 7009): revokes the grant of a refresh or access token.
//   - /authorize: consents at once for the login_hint (or OAuthConfig.DefaultUser) and redirects to
//     redirect_uri with a code and the state; a refresh token is issued for the code only when the request
//     asked for access_type=offline, as Google does.
//
// Tests act as the user through its methods: Grant consents, Revoke withdraws consent, FailTokenRequests makes
// the token endpoint answer with an error status, Close makes it unreachable. Its methods are safe for
// concurrent use.
type OAuthServer struct {
	// URL is the base URL, "http://127.0.0.1:port"; the endpoints follow.
	URL           string
	AuthURL       string
	TokenURL      string
	IntrospectURL string
	RevokeURL     string
	ClientID      string
	ClientSecret  string

	cfg OAuthConfig
	srv *httptest.Server

	mu            sync.Mutex
	lifetime      time.Duration
	grants        map[string]*oauthGrant // by current refresh token
	retired       map[string]*oauthGrant // rotated-away refresh tokens
	access        map[string]*oauthAccess
	codes         map[string]*oauthCode
	failures      []oauthFailure
	refreshes     map[string]int // by user
	introspected  int
	authorizeReqs []url.Values
}

type oauthGrant struct {
	user    string
	scope   string
	refresh string
	revoked bool
}

type oauthAccess struct {
	grant   *oauthGrant
	expires time.Time
}

type oauthCode struct {
	grant       *oauthGrant
	redirectURI string
	offline     bool
	expires     time.Time
	used        bool
}

type oauthFailure struct {
	status     int
	retryAfter time.Duration
}

// NewOAuthServer starts an OAuthServer on a loopback port. Close stops it.
func NewOAuthServer(cfg OAuthConfig) (*OAuthServer, error) {
	if cfg.ClientID == "" {
		cfg.ClientID = "crmsync-test-client"
	}
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = "secret-" + randomHex(8)
	}
	if cfg.AccessTokenLifetime <= 0 {
		cfg.AccessTokenLifetime = time.Hour
	}
	if cfg.Scope == "" {
		cfg.Scope = "https://mail.google.com/"
	}
	s := &OAuthServer{
		cfg: cfg, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, lifetime: cfg.AccessTokenLifetime,
		grants: map[string]*oauthGrant{}, retired: map[string]*oauthGrant{}, access: map[string]*oauthAccess{},
		codes: map[string]*oauthCode{}, refreshes: map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.handleToken)
	mux.HandleFunc("/introspect", s.handleIntrospect)
	mux.HandleFunc("/revoke", s.handleRevoke)
	mux.HandleFunc("/authorize", s.handleAuthorize)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testenv: oauth server: %w", err)
	}
	s.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	s.srv.Start()
	s.URL = s.srv.URL
	s.AuthURL, s.TokenURL = s.URL+"/authorize", s.URL+"/token"
	s.IntrospectURL, s.RevokeURL = s.URL+"/introspect", s.URL+"/revoke"
	return s, nil
}

// StartOAuth returns a new OAuthServer that the test's clean-up closes. It needs nothing installed, so it
// runs under -short too.
func StartOAuth(t testing.TB, cfg OAuthConfig) *OAuthServer {
	t.Helper()
	s, err := NewOAuthServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Close stops the server: from then on its endpoints refuse connections. It is safe to call more than once.
func (s *OAuthServer) Close() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

// Grant records the consent of user (an email address) as /authorize would, and returns the grant's refresh
// token.
func (s *OAuthServer) Grant(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newGrantLocked(user).refresh
}

func (s *OAuthServer) newGrantLocked(user string) *oauthGrant {
	g := &oauthGrant{user: strings.ToLower(user), scope: s.cfg.Scope, refresh: "rt-" + randomHex(16)}
	s.grants[g.refresh] = g
	return g
}

// Revoke withdraws every grant of user, as a user removing the app's access in their account would: the
// grants' refresh tokens are refused with invalid_grant and their access tokens stop being active at once.
// It returns the number of grants revoked.
func (s *OAuthServer) Revoke(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, g := range s.grants {
		if g.user == strings.ToLower(user) && !g.revoked {
			g.revoked = true
			n++
		}
	}
	return n
}

// RefreshToken returns the current refresh token of user's latest grant that is not revoked ("" if none): with
// rotation, the one a client must present next.
func (s *OAuthServer) RefreshToken(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for rt, g := range s.grants {
		if g.user == strings.ToLower(user) && !g.revoked {
			return rt
		}
	}
	return ""
}

// Refreshes returns how many refresh_token grants succeeded for user.
func (s *OAuthServer) Refreshes(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes[strings.ToLower(user)]
}

// Introspections returns how many introspection requests the server answered.
func (s *OAuthServer) Introspections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.introspected
}

// AuthorizeRequests returns the query of every /authorize request so far, in order.
func (s *OAuthServer) AuthorizeRequests() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]url.Values, len(s.authorizeReqs))
	copy(out, s.authorizeReqs)
	return out
}

// SetAccessTokenLifetime changes the lifetime of access tokens issued from now on.
func (s *OAuthServer) SetAccessTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// FailTokenRequests makes the next n requests to /token fail with this HTTP status (a 5xx for an endpoint
// that is down, 429 for one that throttles), with a Retry-After header when retryAfter is positive.
func (s *OAuthServer) FailTokenRequests(status int, retryAfter time.Duration, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures = append(s.failures, oauthFailure{status: status, retryAfter: retryAfter})
	}
}

// Active reports whether accessToken is an active access token and for which user: the introspection
// endpoint's answer, for in-process servers that check tokens without HTTP.
func (s *OAuthServer) Active(accessToken string) (user string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.access[accessToken]
	if a == nil || a.grant.revoked || !time.Now().Before(a.expires) {
		return "", false
	}
	return a.grant.user, true
}

func (s *OAuthServer) issueLocked(g *oauthGrant) (string, time.Duration) {
	at := "at-" + randomHex(16)
	s.access[at] = &oauthAccess{grant: g, expires: time.Now().Add(s.lifetime)}
	return at, s.lifetime
}

// oauthError writes an RFC 6749 error response.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// clientOK checks the client's credentials, from the Authorization header or the form.
func (s *OAuthServer) clientOK(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	return subtle.ConstantTimeCompare([]byte(id), []byte(s.ClientID)) == 1 &&
		subtle.ConstantTimeCompare([]byte(secret), []byte(s.ClientSecret)) == 1
}

func (s *OAuthServer) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "POST only")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) > 0 {
		f := s.failures[0]
		s.failures = s.failures[1:]
		if f.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((f.retryAfter+time.Second-1)/time.Second)))
		}
		oauthError(w, f.status, "temporarily_unavailable", http.StatusText(f.status))
		return
	}
	if !s.clientOK(r) {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		g := s.grants[rt]
		switch {
		case s.retired[rt] != nil:
			oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token was rotated and is no longer valid")
			return
		case g == nil:
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown refresh token")
			return
		case g.revoked:
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Token has been expired or revoked.")
			return
		}
		s.refreshes[g.user]++
		at, life := s.issueLocked(g)
		resp := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": int(life / time.Second), "scope": g.scope}
		if s.cfg.RotateRefreshTokens {
			delete(s.grants, g.refresh)
			s.retired[g.refresh] = g
			g.refresh = "rt-" + randomHex(16)
			s.grants[g.refresh] = g
			resp["refresh_token"] = g.refresh
		}
		writeJSON(w, resp)
	case "authorization_code":
		c := s.codes[r.PostForm.Get("code")]
		if c == nil || c.used || !time.Now().Before(c.expires) || c.grant.revoked {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown, used or expired code")
			return
		}
		if c.redirectURI != r.PostForm.Get("redirect_uri") {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request")
			return
		}
		c.used = true
		at, life := s.issueLocked(c.grant)
		resp := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": int(life / time.Second), "scope": c.grant.scope}
		if c.offline {
			resp["refresh_token"] = c.grant.refresh
		}
		writeJSON(w, resp)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be refresh_token or authorization_code")
	}
}

// bearerToken finds the token of an introspection or revocation request: the form, the query, or a Bearer
// Authorization header.
func bearerToken(r *http.Request) string {
	_ = r.ParseForm()
	if t := r.Form.Get("token"); t != "" {
		return t
	}
	if t := r.URL.Query().Get("access_token"); t != "" {
		return t
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

func (s *OAuthServer) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	tok := bearerToken(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.introspected++
	a := s.access[tok]
	if a == nil || a.grant.revoked || !time.Now().Before(a.expires) {
		writeJSON(w, map[string]any{"active": false})
		return
	}
	writeJSON(w, map[string]any{
		"active": true, "username": a.grant.user, "email": a.grant.user, "sub": a.grant.user,
		"scope": a.grant.scope, "client_id": s.ClientID, "token_type": "Bearer", "exp": a.expires.Unix(),
	})
}

func (s *OAuthServer) handleRevoke(w http.ResponseWriter, r *http.Request) {
	tok := bearerToken(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.grants[tok]; g != nil {
		g.revoked = true
	} else if a := s.access[tok]; a != nil {
		a.grant.revoked = true
	}
	w.WriteHeader(http.StatusOK) // RFC 7009: 200 even for an unknown token
}

func (s *OAuthServer) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	s.authorizeReqs = append(s.authorizeReqs, q)
	s.mu.Unlock()
	if q.Get("client_id") != s.ClientID {
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	}
	if q.Get("response_type") != "code" {
		http.Error(w, "response_type must be code", http.StatusBadRequest)
		return
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Scheme == "" {
		http.Error(w, "a redirect_uri is required", http.StatusBadRequest)
		return
	}
	user := q.Get("login_hint")
	if user == "" {
		user = s.cfg.DefaultUser
	}
	if user == "" {
		http.Error(w, "no user to consent: pass login_hint or set OAuthConfig.DefaultUser", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	g := s.newGrantLocked(user)
	code := "code-" + randomHex(12)
	s.codes[code] = &oauthCode{grant: g, redirectURI: q.Get("redirect_uri"), offline: q.Get("access_type") == "offline",
		expires: time.Now().Add(10 * time.Minute)}
	s.mu.Unlock()
	rq := redirect.Query()
	rq.Set("code", code)
	if st := q.Get("state"); st != "" {
		rq.Set("state", st)
	}
	redirect.RawQuery = rq.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ---------------------------------------------------------------------------------------------------------------
// Dovecot with the oauth2 passdb

// OAuthMail is a private Dovecot, started by scripts/mailservers-oauth.sh, that signs users in with OAuth 2.0
// only: its oauth2 passdb offers XOAUTH2 and OAUTHBEARER and checks each access token with the OAuthServer's
// introspection endpoint (introspection_mode = post). Any address of Domain is a mailbox (a static userdb), so
// a user needs only a grant (OAuth.Grant) to sign in. SMTP submission authenticates the same way and relays
// to a sink in this process that delivers over LMTP back into this Dovecot: mail sent to a user of Domain
// arrives in that user's INBOX.
type OAuthMail struct {
	OAuth *OAuthServer

	Dir       string
	IMAPAddr  string // IMAP, plaintext with STARTTLS
	IMAPSAddr string // IMAP over implicit TLS
	SMTPAddr  string // submission: STARTTLS, AUTH required
	SMTPSAddr string // submission over implicit TLS
	LMTPAddr  string // LMTP on TCP, for Deliver

	CAPool     *x509.CertPool
	ServerName string // "localhost"
	Domain     string // "example.test"

	relay *relaySink
}

// OAuthMailServers starts an OAuthServer with cfg and a private Dovecot that trusts it, and stops both when
// the test ends. Like MailServers it skips under -short, and fails the test when the servers cannot start
// (starting needs root: the script installs missing Debian packages with scripts/mailservers.sh install).
func OAuthMailServers(t testing.TB, cfg OAuthConfig) *OAuthMail {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real Dovecot; run without -short")
	}
	oauth := StartOAuth(t, cfg)
	relay, err := newRelaySink()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(relay.close)
	script, err := findScript("mailservers-oauth.sh")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dir, err := os.MkdirTemp("", "crmsync-oauth-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	out, err := runScript(ctx, []string{
		"CRMSYNC_OAUTH2_INTROSPECTION_URL=" + oauth.IntrospectURL,
		"CRMSYNC_OAUTH_RELAY_ADDR=" + relay.addr(),
		"CRMSYNC_MAIL_WATCH_PID=" + strconv.Itoa(os.Getpid()),
	}, script, "start", dir)
	stopDir := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := runScript(ctx, nil, script, "stop", dir); err != nil {
			t.Errorf("testenv: stopping the OAuth Dovecot in %s: %v\n%s", dir, err, out)
		}
		os.RemoveAll(dir)
	}
	if err != nil {
		stopDir()
		t.Fatalf("testenv: starting the OAuth Dovecot (bash %s start %s) failed: %v\n%s", script, dir, err, out)
	}
	t.Cleanup(stopDir)
	vars, err := ReadEnvFile(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	m := &OAuthMail{
		OAuth: oauth, Dir: dir, relay: relay,
		IMAPAddr: vars["CRMSYNC_OAUTH_IMAP_ADDR"], IMAPSAddr: vars["CRMSYNC_OAUTH_IMAPS_ADDR"],
		SMTPAddr: vars["CRMSYNC_OAUTH_SMTP_ADDR"], SMTPSAddr: vars["CRMSYNC_OAUTH_SMTPS_ADDR"],
		LMTPAddr: vars["CRMSYNC_OAUTH_LMTP_ADDR"], ServerName: "localhost", Domain: vars["CRMSYNC_OAUTH_DOMAIN"],
	}
	for k, v := range map[string]string{"IMAP": m.IMAPAddr, "IMAPS": m.IMAPSAddr, "SMTP": m.SMTPAddr,
		"SMTPS": m.SMTPSAddr, "LMTP": m.LMTPAddr, "DOMAIN": m.Domain} {
		if v == "" {
			t.Fatalf("testenv: %s/env lacks CRMSYNC_OAUTH_%s_ADDR (or _DOMAIN)", dir, k)
		}
	}
	pem, err := os.ReadFile(vars["CRMSYNC_OAUTH_TLS_CA"])
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	m.CAPool = x509.NewCertPool()
	if !m.CAPool.AppendCertsFromPEM(pem) {
		t.Fatalf("testenv: no certificate in %s", vars["CRMSYNC_OAUTH_TLS_CA"])
	}
	relay.setLMTP(m.LMTPAddr)
	return m
}

// TLSConfig returns a client configuration that verifies the servers' certificate.
func (m *OAuthMail) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: m.CAPool, ServerName: m.ServerName, MinVersion: tls.VersionTLS12}
}

// NewUser returns a new address of Domain, unique to this call, that starts with localPart. Every address of
// Domain is a mailbox, so nothing is created on the server: give it a grant (OAuth.Grant) to sign in.
func (m *OAuthMail) NewUser(localPart string) string {
	return sanitizeLocalPart(localPart) + "-" + randomHex(4) + "@" + m.Domain
}

// Deliver puts raw (an RFC 5322 message) into the INBOX of to, over LMTP, as a mail server's delivery would.
func (m *OAuthMail) Deliver(ctx context.Context, to string, raw []byte) error {
	return deliverLMTP(ctx, "tcp", m.LMTPAddr, "sender@"+m.Domain, []string{to}, raw)
}

// Relayed returns the number of messages the submission service relayed (and the sink delivered).
func (m *OAuthMail) Relayed() int { return m.relay.count() }

// relaySink is the SMTP server Dovecot's submission service relays to: it takes any message and delivers it
// over LMTP into the OAuth Dovecot.
type relaySink struct {
	ln net.Listener
	wg sync.WaitGroup

	mu        sync.Mutex
	lmtp      string
	delivered int
	conns     map[net.Conn]bool
}

func newRelaySink() (*relaySink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("relay sink: %w", err)
	}
	r := &relaySink{ln: ln, conns: map[net.Conn]bool{}}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

func (r *relaySink) addr() string { return r.ln.Addr().String() }

func (r *relaySink) setLMTP(addr string) {
	r.mu.Lock()
	r.lmtp = addr
	r.mu.Unlock()
}

func (r *relaySink) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delivered
}

func (r *relaySink) close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *relaySink) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns[c] = true
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.session(c)
			r.mu.Lock()
			delete(r.conns, c)
			r.mu.Unlock()
			c.Close()
		}()
	}
}

// session speaks just enough SMTP for a relaying client.
func (r *relaySink) session(c net.Conn) {
	br := bufio.NewReader(c)
	reply := func(s string) bool {
		_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
		_, err := io.WriteString(c, s+"\r\n")
		return err == nil
	}
	if !reply("220 relay-sink ESMTP") {
		return
	}
	var from string
	var rcpts []string
	for {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch verb {
		case "EHLO":
			reply("250-relay-sink")
			reply("250 8BITMIME")
		case "HELO":
			reply("250 relay-sink")
		case "MAIL":
			from, rcpts = pathArg(line), nil
			reply("250 2.1.0 Ok")
		case "RCPT":
			rcpts = append(rcpts, pathArg(line))
			reply("250 2.1.5 Ok")
		case "DATA":
			if !reply("354 End data with <CR><LF>.<CR><LF>") {
				return
			}
			body, err := readDotBody(br)
			if err != nil {
				return
			}
			r.mu.Lock()
			lmtp := r.lmtp
			r.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err = deliverLMTP(ctx, "tcp", lmtp, from, rcpts, body)
			cancel()
			if err != nil {
				reply("451 4.3.0 delivery failed: " + strings.ReplaceAll(err.Error(), "\n", " "))
				continue
			}
			r.mu.Lock()
			r.delivered++
			r.mu.Unlock()
			reply("250 2.0.0 Ok: delivered")
		case "RSET":
			from, rcpts = "", nil
			reply("250 2.0.0 Ok")
		case "NOOP":
			reply("250 2.0.0 Ok")
		case "QUIT":
			reply("221 2.0.0 Bye")
			return
		default:
			reply("502 5.5.2 command not recognized")
		}
	}
}

// pathArg returns the address in "MAIL FROM:<a> ..." or "RCPT TO:<a> ...".
func pathArg(line string) string {
	i, j := strings.IndexByte(line, '<'), strings.IndexByte(line, '>')
	if i < 0 || j < i {
		return ""
	}
	return line[i+1 : j]
}

// readDotBody reads a DATA body up to the line ".", undoing dot-stuffing.
func readDotBody(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "." {
			return out, nil
		}
		line = strings.TrimPrefix(line, ".")
		out = append(out, line...)
	}
}

// deliverLMTP delivers raw to rcpts over LMTP at addr on network ("tcp": host:port;
// "unix": a socket path), within ctx's deadline or 30 seconds.
func deliverLMTP(ctx context.Context, network, addr, from string, rcpts []string, raw []byte) error {
	if addr == "" {
		return errors.New("no LMTP address")
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return fmt.Errorf("lmtp: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	}
	br := bufio.NewReader(c)
	expect := func(code string) error {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(line, code) {
				return fmt.Errorf("lmtp: want %s, got %q", code, strings.TrimSpace(line))
			}
			if len(line) < 4 || line[3] != '-' {
				return nil
			}
		}
	}
	send := func(s string) error {
		_, err := io.WriteString(c, s+"\r\n")
		return err
	}
	if err := expect("220"); err != nil {
		return err
	}
	steps := []struct{ cmd, code string }{{"LHLO localhost", "250"}, {"MAIL FROM:<" + from + ">", "250"}}
	for _, r := range rcpts {
		steps = append(steps, struct{ cmd, code string }{"RCPT TO:<" + r + ">", "250"})
	}
	steps = append(steps, struct{ cmd, code string }{"DATA", "354"})
	for _, s := range steps {
		if err := send(s.cmd); err != nil {
			return err
		}
		if err := expect(s.code); err != nil {
			return fmt.Errorf("%s: %w", s.cmd, err)
		}
	}
	var body strings.Builder
	for _, line := range strings.SplitAfter(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n") {
		if line == "" {
			continue
		}
		line = strings.TrimSuffix(line, "\n")
		if strings.HasPrefix(line, ".") {
			line = "." + line
		}
		body.WriteString(line + "\r\n")
	}
	body.WriteString(".\r\n")
	if _, err := io.WriteString(c, body.String()); err != nil {
		return err
	}
	for range rcpts { // LMTP answers once per recipient
		if err := expect("250"); err != nil {
			return err
		}
	}
	_ = send("QUIT")
	return nil
}
