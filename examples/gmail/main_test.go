package main

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The example is part of the documentation: it must keep working, and show each step.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := runDemo(ctx, &out); err != nil {
		t.Fatalf("runDemo: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"Stored the refresh token in mailbox mb-ann's credentials.",
		"Test & Enable, incoming: passed", "Test & Enable, outgoing: passed",
		"Your Gmail mailbox is connected.",
		`Tracked "Order #1001" from customer@elsewhere.test as gm:`,
		`Sent "Order #1001 confirmed"`, "secrets hidden",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	var consent *url.URL
	for _, line := range strings.Split(got, "\n") {
		if u, ok := strings.CutPrefix(line, "Consent URL: "); ok {
			consent, _ = url.Parse(u)
		}
	}
	if consent == nil {
		t.Fatalf("no consent URL in the output:\n%s", got)
	}
	q := consent.Query()
	for k, v := range map[string]string{"access_type": "offline", "prompt": "consent", "scope": "https://mail.google.com/",
		"login_hint": "ann@example.test", "response_type": "code"} {
		if q.Get(k) != v {
			t.Errorf("consent URL %s=%q, want %q", k, q.Get(k), v)
		}
	}
	if q.Get("state") == "" {
		t.Error("the consent URL has no state")
	}
}

func TestGoogleModeNeedsCredentials(t *testing.T) {
	t.Setenv("GMAIL_CLIENT_ID", "")
	err := runGoogle(context.Background(), &bytes.Buffer{}, "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "GMAIL_CLIENT_ID") {
		t.Errorf("runGoogle without credentials = %v, want the instructions", err)
	}
}
