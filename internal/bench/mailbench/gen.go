package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// generator makes the benchmark's messages: deterministic for a seed, mixed like a real
// inbox. Most are 2–20 KB of text (plain, or plain and HTML alternatives); one in ten
// carries an attachment of up to 200 KB (random bytes, base64).
type generator struct {
	seed  uint64
	to    string
	words []string
	base  time.Time
}

func newGenerator(seed uint64, to string) *generator {
	r := rand.New(rand.NewPCG(seed, 0x6d61696c62656e63)) // "mailbenc"
	syll := []string{"ka", "lo", "mi", "ne", "ra", "su", "to", "vi", "de", "an", "or", "el", "is", "um", "pe", "qu", "ba", "co"}
	words := make([]string, 2000)
	for i := range words {
		var b strings.Builder
		for range 1 + r.IntN(4) {
			b.WriteString(syll[r.IntN(len(syll))])
		}
		words[i] = b.String()
	}
	return &generator{seed: seed, to: to, words: words, base: time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)}
}

// messageID returns the Message-ID (without brackets) of message i.
func (g *generator) messageID(i int) string {
	return fmt.Sprintf("bench-%d-%d@mailbench.crmsync.test", g.seed, i)
}

// message returns message i with CRLF line ends. The same seed and i always give the
// same bytes.
func (g *generator) message(i int) []byte {
	r := rand.New(rand.NewPCG(g.seed, uint64(i)))
	var b bytes.Buffer
	b.Grow(24 << 10)
	sender := r.IntN(60)
	fmt.Fprintf(&b, "From: Sender %d <sender%d@customers.example>\r\n", sender, sender)
	fmt.Fprintf(&b, "To: <%s>\r\n", g.to)
	if r.IntN(4) == 0 {
		fmt.Fprintf(&b, "Cc: Colleague %d <colleague%d@example.test>\r\n", sender%7, sender%7)
	}
	fmt.Fprintf(&b, "Subject: %s %d\r\n", g.sentence(r, 3+r.IntN(6)), i)
	fmt.Fprintf(&b, "Date: %s\r\n", g.base.Add(time.Duration(i)*time.Minute).Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s>\r\n", g.messageID(i))
	if i > 0 && r.IntN(3) == 0 {
		parent := g.messageID(r.IntN(i))
		fmt.Fprintf(&b, "In-Reply-To: <%s>\r\nReferences: <%s>\r\n", parent, parent)
	}
	b.WriteString("MIME-Version: 1.0\r\n")

	textSize := 2<<10 + r.IntN(18<<10) // 2–20 KB of text
	switch kind := r.IntN(20); {
	case kind < 2: // 10%: an attachment
		const bd = "mailbench-mixed"
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", bd)
		fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", bd)
		g.text(&b, r, textSize)
		size := 1<<10 + r.IntN(199<<10) // up to 200 KB
		name := fmt.Sprintf("document-%d.pdf", i)
		fmt.Fprintf(&b, "--%s\r\nContent-Type: application/pdf; name=\"%s\"\r\n"+
			"Content-Disposition: attachment; filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", bd, name, name)
		g.attachment(&b, r, size)
		fmt.Fprintf(&b, "--%s--\r\n", bd)
	case kind < 11: // 45%: plain and HTML
		const bd = "mailbench-alt"
		fmt.Fprintf(&b, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n", bd)
		fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", bd)
		g.text(&b, r, textSize/2)
		fmt.Fprintf(&b, "--%s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n", bd)
		g.html(&b, r, textSize/2)
		fmt.Fprintf(&b, "--%s--\r\n", bd)
	default: // 45%: plain text
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
		g.text(&b, r, textSize)
	}
	return b.Bytes()
}

func (g *generator) sentence(r *rand.Rand, n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = g.words[r.IntN(len(g.words))]
	}
	ws[0] = strings.ToUpper(ws[0][:1]) + ws[0][1:]
	return strings.Join(ws, " ")
}

// text writes about size bytes of text in lines of at most 76 characters.
func (g *generator) text(b *bytes.Buffer, r *rand.Rand, size int) {
	end := b.Len() + size
	line := 0
	for b.Len() < end {
		w := g.words[r.IntN(len(g.words))]
		if line+len(w)+1 > 76 {
			b.WriteString("\r\n")
			line = 0
			if r.IntN(8) == 0 {
				b.WriteString("\r\n")
			}
		} else if line > 0 {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	b.WriteString("\r\n")
}

func (g *generator) html(b *bytes.Buffer, r *rand.Rand, size int) {
	b.WriteString("<html><body>\r\n")
	end := b.Len() + size
	for b.Len() < end {
		b.WriteString("<p>")
		g.text(b, r, 200+r.IntN(600))
		b.WriteString("</p>\r\n")
	}
	b.WriteString("</body></html>\r\n")
}

// attachment writes size random bytes, base64 in lines of 76 characters.
func (g *generator) attachment(b *bytes.Buffer, r *rand.Rand, size int) {
	raw := make([]byte, size+7)
	for i := 0; i < size; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			raw[i+j] = byte(v >> (8 * j))
		}
	}
	raw = raw[:size]
	enc := make([]byte, base64.StdEncoding.EncodedLen(size))
	base64.StdEncoding.Encode(enc, raw)
	for len(enc) > 76 {
		b.Write(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.Write(enc)
	b.WriteString("\r\n")
}

// stats returns the size of messages 0..n-1 and how many carry an attachment.
func (g *generator) stats(n int) (size int64, attachments int) {
	for i := range n {
		m := g.message(i)
		size += int64(len(m))
		if bytes.Contains(m[:min(len(m), 2048)], []byte("multipart/mixed")) {
			attachments++
		}
	}
	return size, attachments
}
