package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The quickstart is part of the documentation: it must keep working, and say what it did.
func TestQuickstart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"Order #1001", "Meeting next week?", "Renewal quote for ACME", "sent", "received",
		"alice@example.test  incoming", "Sent folder holds 1 message(s)", "Alerts: 0"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
