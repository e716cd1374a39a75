package main

import (
	"fmt"
	"testing"

	"github.com/crmsync/crmsync/provider/mailparse"
)

// BenchmarkParseGenerated parses the benchmark's generated messages, as delivered by
// Dovecot, the way an IMAP ingest does: the header-only email first, then the bodies and attachments. It is the
// parsing share of (a), without the servers:
//
//	go test -run '^$' -bench ParseGenerated -benchmem ./internal/bench/mailbench
func BenchmarkParseGenerated(b *testing.B) {
	g := newGenerator(1, "bench@example.test")
	msgs := make([][]byte, 1000)
	var size int64
	for i := range msgs {
		// As Dovecot stores it: with the fields its delivery adds.
		delivered := fmt.Sprintf("Return-Path: <mailbench@customers.example>\r\nDelivered-To: bench@example.test\r\n"+
			"Received: from mailbench\r\n\tby localhost with LMTP\r\n\tid nvPmFICYBmvvcgAAg+zDdQ:T%d\r\n"+
			"\t(envelope-from <mailbench@customers.example>)\r\n\tfor <bench@example.test>; Wed, 25 Nov 2026 08:13:00 +0000\r\n", i)
		msgs[i] = append([]byte(delivered), g.message(i)...)
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

// BenchmarkParseHeaderGenerated is the header-only share of BenchmarkParseGenerated.
func BenchmarkParseHeaderGenerated(b *testing.B) {
	g := newGenerator(1, "bench@example.test")
	heads := make([][]byte, 1000)
	for i := range heads {
		m := g.message(i)
		heads[i] = append([]byte("Return-Path: <mailbench@customers.example>\r\nDelivered-To: bench@example.test\r\n"+
			"Received: from mailbench\r\n\tby localhost with LMTP\r\n\tid nvPmFICYBmvvcgAAg+zDdQ:T1992\r\n"+
			"\t(envelope-from <mailbench@customers.example>)\r\n\tfor <bench@example.test>; Wed, 25 Nov 2026 08:13:00 +0000\r\n"), m...)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := mailparse.ParseHeader(heads[i%len(heads)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
