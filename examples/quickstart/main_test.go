package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The quickstart is part of the documentation: it must keep working, and say what it did.
// A second run on the same database resumes: it tracks nothing twice and sends nothing
// again.
func TestQuickstart(t *testing.T) {
	db := filepath.Join(t.TempDir(), "quickstart.db")
	first := runQuickstart(t, db)
	for _, want := range []string{"Starting a new database", "(5 new in this run)", "Order #1001", "Meeting next week?",
		"Renewal quote for ACME", "sent", "received", "alice@example.test  incoming", "Sent folder holds 1 message(s)", "Alerts: 0"} {
		if !strings.Contains(first, want) {
			t.Errorf("first run: output lacks %q:\n%s", want, first)
		}
	}
	second := runQuickstart(t, db)
	for _, want := range []string{"Resuming from", "holds 5 email(s)", "was already sent", "(0 new in this run)",
		"the SMTP server accepted 0"} {
		if !strings.Contains(second, want) {
			t.Errorf("second run: output lacks %q:\n%s", want, second)
		}
	}
	raw, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(password)) {
		t.Error("the mailbox password is stored in clear")
	}
}

func runQuickstart(t *testing.T, db string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, db); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	return out.String()
}
