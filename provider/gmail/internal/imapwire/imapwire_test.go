package imapwire

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadMessageAndParse(t *testing.T) {
	stream := "* 12 FETCH (UID 7 X-GM-MSGID 1278455344230334865 X-GM-LABELS (\\Inbox \"Clients/Big one\" Work) BODY[HEADER.FIELDS (MESSAGE-ID)] {23}\r\nMessage-ID: <a@b>\r\n\r\nxx)\r\n" +
		"a3 OK Success\r\n"
	br := bufio.NewReader(strings.NewReader(stream))
	msg, err := ReadMessage(br, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	seq, attrs, ok := Attrs(vals)
	if !ok || seq != "12" {
		t.Fatalf("Attrs: %v %v", seq, ok)
	}
	if attrs["UID"].Text != "7" || attrs["X-GM-MSGID"].Text != "1278455344230334865" {
		t.Errorf("attrs: %v", attrs)
	}
	labels := attrs["X-GM-LABELS"].List
	if len(labels) != 3 || labels[0].Text != `\Inbox` || labels[1].Text != "Clients/Big one" || labels[1].Kind != String {
		t.Errorf("labels: %v", labels)
	}
	if got := attrs["BODY[HEADER.FIELDS (MESSAGE-ID)]"].Text; got != "Message-ID: <a@b>\r\n\r\nxx" {
		t.Errorf("literal: %q", got)
	}
	next, err := ReadMessage(br, 1<<20)
	if err != nil || Tag(next) != "a3" {
		t.Fatalf("next message: %q %v", next, err)
	}
}

func TestParseErrors(t *testing.T) {
	for name, in := range map[string]string{
		"unclosed list":   "* 1 FETCH (UID 1\r\n",
		"short literal":   "* 1 FETCH (BODY[] {10}\r\nabc)\r\n",
		"unclosed quote":  "* SEARCH \"abc\r\n",
		"unclosed braket": "* 1 FETCH (BODY[HEADER\r\n",
		"stray paren":     "* )\r\n",
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: no error for %q", name, in)
		}
	}
}

func TestLiteralAt(t *testing.T) {
	for in, want := range map[string]int64{"a {5}\r\n": 5, "a {5+}\r\n": 5, "a ~{0}\r\n": 0, "a {x}\r\n": -1, "a 5}\r\n": -1, "a\r\n": -1} {
		if got, _ := LiteralAt([]byte(in)); got != want {
			t.Errorf("LiteralAt(%q) = %d, want %d", in, got, want)
		}
	}
	if _, ns := LiteralAt([]byte("x {3+}\r\n")); !ns {
		t.Error("{3+} is non-synchronizing")
	}
}

func TestCapabilities(t *testing.T) {
	if got := Capabilities([]byte("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] Gimap ready\r\n")); strings.Join(got, " ") != "IMAP4REV1 AUTH=XOAUTH2 SASL-IR" {
		t.Errorf("greeting: %v", got)
	}
	if got := Capabilities([]byte("* CAPABILITY IMAP4rev1 X-GM-EXT-1\r\n")); strings.Join(got, " ") != "IMAP4REV1 X-GM-EXT-1" {
		t.Errorf("untagged: %v", got)
	}
	if got := Capabilities([]byte("a1 OK done\r\n")); got != nil {
		t.Errorf("none: %v", got)
	}
}

func TestMailboxUTF7(t *testing.T) {
	for plain, enc := range map[string]string{
		"Clients":           "Clients",
		"Kunden & Partner":  "Kunden &- Partner",
		"Réunions":          "R&AOk-unions",
		"日本語":               "&ZeVnLIqe-",
		"[Gmail]/Sent Mail": "[Gmail]/Sent Mail",
	} {
		if got := EncodeMailbox(plain); got != enc {
			t.Errorf("EncodeMailbox(%q) = %q, want %q", plain, got, enc)
		}
		if got := DecodeMailbox(enc); got != plain {
			t.Errorf("DecodeMailbox(%q) = %q, want %q", enc, got, plain)
		}
	}
	if got := DecodeMailbox("broken&"); got != "broken&" {
		t.Errorf("invalid input is kept: %q", got)
	}
}

func TestQuote(t *testing.T) {
	if got := Quote(`a "b" \c`); got != `"a \"b\" \\c"` {
		t.Errorf("Quote = %s", got)
	}
	vals, err := Parse([]byte("x " + Quote(`a "b" \c`) + "\r\n"))
	if err != nil || vals[1].Text != `a "b" \c` {
		t.Errorf("round trip: %v %v", vals, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"* 1 FETCH (UID 1 X-GM-MSGID 2 X-GM-LABELS (\\Inbox \"a b\"))\r\n",
		"* 2 FETCH (BODY[HEADER] {3}\r\nabc)\r\n",
		"a1 OK [CAPABILITY IMAP4rev1] done\r\n",
		"* SEARCH 1 2 3\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := Parse(b)
		if err != nil {
			return
		}
		for _, v := range vals {
			_ = v.String()
		}
		Attrs(vals)
	})
}

func FuzzReadMessage(f *testing.F) {
	f.Add([]byte("* 2 FETCH (BODY[HEADER] {3}\r\nabc)\r\na OK\r\n"))
	f.Add([]byte("{99999999999}\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(strings.NewReader(string(b)))
		for range 10 {
			if _, err := ReadMessage(br, 1<<16); err != nil {
				return
			}
		}
	})
}

func FuzzMailbox(f *testing.F) {
	f.Add("Réunions & co")
	f.Fuzz(func(t *testing.T, s string) {
		if !strings.ContainsRune(s, '\uFFFD') && isValidUTF8(s) {
			if got := DecodeMailbox(EncodeMailbox(s)); got != s {
				t.Errorf("round trip of %q gave %q", s, got)
			}
		}
		_ = DecodeMailbox(s)
	})
}

func isValidUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }
