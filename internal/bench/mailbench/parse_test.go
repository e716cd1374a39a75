package main

import (
	"testing"

	"github.com/crmsync/crmsync/provider/mailparse"
)

// BenchmarkParseGenerated parses the benchmark's generated messages the way an IMAP
// ingest does: the header-only email first, then the bodies and attachments. It is the
// parsing share of (a), without the servers:
//
//	go test -run '^$' -bench ParseGenerated -benchmem ./internal/bench/mailbench
func BenchmarkParseGenerated(b *testing.B) {
	g := newGenerator(1, "bench@example.test")
	msgs := make([][]byte, 1000)
	var size int64
	for i := range msgs {
		msgs[i] = g.message(i)
		size += int64(len(msgs[i]))
	}
	b.SetBytes(size / int64(len(msgs)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		raw := msgs[i%len(msgs)]
		i++
		e, err := mailparse.ParseHeader(raw)
		if err != nil {
			b.Fatal(err)
		}
		if err := mailparse.ParseBody(e, raw, mailparse.Options{}); err != nil {
			b.Fatal(err)
		}
		if e.TextBody == "" {
			b.Fatalf("message %d: no text body", i-1)
		}
	}
}
