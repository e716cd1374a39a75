package testenv_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync/internal/testenv"
)

// tokenReq posts a token request with the client's credentials in the form.
func tokenReq(t *testing.T, s *testenv.OAuthServer, form url.Values) (int, map[string]any) {
	t.Helper()
	form.Set("client_id", s.ClientID)
	form.Set("client_secret", s.ClientSecret)
	resp, err := http.PostForm(s.TokenURL, form)
	if err != nil {
		t.Fatalf("POST %s: %v", s.TokenURL, err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decoding the token response: %v", err)
	}
	return resp.StatusCode, body
}

func introspect(t *testing.T, s *testenv.OAuthServer, token string) map[string]any {
	t.Helper()
	resp, err := http.PostForm(s.IntrospectURL, url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body
}

func TestOAuthServerRefreshRotateRevoke(t *testing.T) {
	s := testenv.StartOAuth(t, testenv.OAuthConfig{RotateRefreshTokens: true, AccessTokenLifetime: time.Hour})
	rt := s.Grant("Ann@example.test")

	status, body := tokenReq(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if status != 200 {
		t.Fatalf("refresh: status %d %v", status, body)
	}
	at, _ := body["access_token"].(string)
	next, _ := body["refresh_token"].(string)
	if at == "" || next == "" || next == rt {
		t.Fatalf("refresh with rotation: got %v", body)
	}
	if got := s.RefreshToken("ann@example.test"); got != next {
		t.Errorf("RefreshToken = %q, want the rotated %q", got, next)
	}
	if in := introspect(t, s, at); in["active"] != true || in["username"] != "ann@example.test" {
		t.Errorf("introspection of a fresh token: %v", in)
	}

	// The rotated-away refresh token is refused.
	status, body = tokenReq(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("reusing a rotated refresh token: %d %v, want 400 invalid_grant", status, body)
	}

	if n := s.Revoke("ann@example.test"); n != 1 {
		t.Fatalf("Revoke = %d, want 1", n)
	}
	if in := introspect(t, s, at); in["active"] != false {
		t.Errorf("introspection after revocation: %v, want inactive", in)
	}
	status, body = tokenReq(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next}})
	if status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("refresh after revocation: %d %v, want 400 invalid_grant", status, body)
	}
	if s.Refreshes("ann@example.test") != 1 {
		t.Errorf("Refreshes = %d, want 1", s.Refreshes("ann@example.test"))
	}
}

func TestOAuthServerExpiryAndFailures(t *testing.T) {
	s := testenv.StartOAuth(t, testenv.OAuthConfig{AccessTokenLifetime: time.Second})
	rt := s.Grant("bob@example.test")
	_, body := tokenReq(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	at := body["access_token"].(string)
	if body["expires_in"] != float64(1) {
		t.Errorf("expires_in = %v, want 1", body["expires_in"])
	}
	if _, ok := s.Active(at); !ok {
		t.Fatal("a fresh token is not active")
	}
	time.Sleep(1100 * time.Millisecond)
	if _, ok := s.Active(at); ok {
		t.Error("an expired token is still active")
	}

	s.FailTokenRequests(http.StatusTooManyRequests, 30*time.Second, 1)
	resp, err := http.PostForm(s.TokenURL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt},
		"client_id": {s.ClientID}, "client_secret": {s.ClientSecret}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "30" {
		t.Errorf("injected failure: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if status, _ := tokenReq(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}); status != 200 {
		t.Errorf("after the injected failure: status %d", status)
	}

	s.Close()
	if _, err := http.PostForm(s.TokenURL, url.Values{}); err == nil {
		t.Error("a closed server still answers")
	}
}

func TestOAuthServerAuthorizationCode(t *testing.T) {
	s := testenv.StartOAuth(t, testenv.OAuthConfig{})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(offline bool) (string, string) {
		q := url.Values{"client_id": {s.ClientID}, "response_type": {"code"}, "redirect_uri": {"http://127.0.0.1/cb"},
			"state": {"st"}, "login_hint": {"carol@example.test"}}
		if offline {
			q.Set("access_type", "offline")
		}
		resp, err := client.Get(s.AuthURL + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || resp.StatusCode != http.StatusFound {
			t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if loc.Query().Get("state") != "st" {
			t.Errorf("state not passed back: %v", loc)
		}
		return loc.Query().Get("code"), loc.String()
	}
	for _, offline := range []bool{false, true} {
		code, _ := get(offline)
		status, body := tokenReq(t, s, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"http://127.0.0.1/cb"}})
		if status != 200 {
			t.Fatalf("exchange: %d %v", status, body)
		}
		if _, has := body["refresh_token"]; has != offline {
			t.Errorf("access_type=offline %v: refresh token issued = %v", offline, has)
		}
		if status, _ := tokenReq(t, s, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"http://127.0.0.1/cb"}}); status != 400 {
			t.Errorf("a code used twice: status %d, want 400", status)
		}
	}
	if n := len(s.AuthorizeRequests()); n != 2 {
		t.Errorf("AuthorizeRequests = %d, want 2", n)
	}
}

// imapLine reads one line.
func imapLine(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading from IMAP: %v", err)
	}
	return strings.TrimRight(line, "\r\n")
}

// xoauth2Login opens IMAPS and authenticates with XOAUTH2; it returns the tagged answer.
func xoauth2Login(t *testing.T, m *testenv.OAuthMail, user, token string) string {
	t.Helper()
	c, err := tls.Dial("tcp", m.IMAPSAddr, m.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	if g := imapLine(t, br); !strings.HasPrefix(g, "* OK") || !strings.Contains(g, "AUTH=XOAUTH2") {
		t.Fatalf("greeting %q does not offer XOAUTH2", g)
	}
	ir := base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
	fmt.Fprintf(c, "a1 AUTHENTICATE XOAUTH2 %s\r\n", ir)
	for {
		line := imapLine(t, br)
		switch {
		case strings.HasPrefix(line, "+"):
			fmt.Fprintf(c, "\r\n") // the error challenge: answer empty, as XOAUTH2 says
		case strings.HasPrefix(line, "a1 "):
			return line
		}
	}
}

// TestOAuthDovecot proves the chain provider/gmail's full tests rely on: Dovecot's oauth2 passdb accepts an
// access token the OAuthServer issued (asking its introspection endpoint), refuses it once the grant is
// revoked, and submission with XOAUTH2 relays a message that arrives in the recipient's INBOX.
func TestOAuthDovecot(t *testing.T) {
	m := testenv.OAuthMailServers(t, testenv.OAuthConfig{})
	ann, bob := m.NewUser("ann"), m.NewUser("bob")
	m.OAuth.Grant(ann)
	tokenOf := func(user string) string {
		_, body := tokenReq(t, m.OAuth, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m.OAuth.RefreshToken(user)}})
		return body["access_token"].(string)
	}
	at := tokenOf(ann)
	before := m.OAuth.Introspections()
	if got := xoauth2Login(t, m, ann, at); !strings.HasPrefix(got, "a1 OK") {
		t.Fatalf("XOAUTH2 with a valid token: %q", got)
	}
	if m.OAuth.Introspections() == before {
		t.Error("Dovecot did not ask the introspection endpoint")
	}
	if got := xoauth2Login(t, m, bob, at); !strings.HasPrefix(got, "a1 NO") {
		t.Errorf("XOAUTH2 with another user's token: %q, want NO", got)
	}

	// Submission: XOAUTH2 after STARTTLS, then a message to bob, relayed and delivered.
	c, err := smtp.Dial(m.SMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(m.TLSConfig()); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(xoauth2Auth{user: ann, token: at}); err != nil {
		t.Fatalf("SMTP AUTH XOAUTH2: %v", err)
	}
	sendMessage(t, c, ann, bob, "oauth chain")
	_ = c.Quit()
	deadline := time.Now().Add(30 * time.Second)
	for m.Relayed() < 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if m.Relayed() != 1 {
		t.Errorf("Relayed = %d, want 1", m.Relayed())
	}

	// LMTP delivery, then a revoked grant: the same token is refused at once.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Deliver(ctx, ann, []byte("From: x@example.test\r\nSubject: hi\r\nMessage-ID: <d1@example.test>\r\n\r\nhello\r\n")); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	m.OAuth.Revoke(ann)
	if got := xoauth2Login(t, m, ann, at); !strings.HasPrefix(got, "a1 NO") {
		t.Errorf("XOAUTH2 after revocation: %q, want NO", got)
	}
}

// xoauth2Auth is net/smtp's Auth for XOAUTH2.
type xoauth2Auth struct{ user, token string }

func (a xoauth2Auth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + a.user + "\x01auth=Bearer " + a.token + "\x01\x01"), nil
}

func (a xoauth2Auth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return []byte{}, nil
	}
	return nil, nil
}

var _ net.Conn = (*tls.Conn)(nil)
