package mailparse

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// readParts reads every part of a multipart body the way the parser uses a reader, and
// describes what it read: each part's fields and body and the error that cut the body
// short, then the error that ended the parts.
func readParts(next func() (textproto.Header, []byte, error, error)) []string {
	var out []string
	for range 1000 {
		h, body, berr, err := next()
		if err != nil {
			return append(out, "end: "+err.Error())
		}
		var fields []string
		for f := h.Fields(); f.Next(); {
			fields = append(fields, f.Key()+": "+f.Value())
		}
		out = append(out, fmt.Sprintf("part %q body %q error %v", fields, body, berr))
	}
	return append(out, "too many parts")
}

func goMessageParts(body []byte, boundary string) []string {
	mr := textproto.NewMultipartReader(bytes.NewReader(body), boundary)
	return readParts(func() (textproto.Header, []byte, error, error) {
		p, err := mr.NextPart()
		if err != nil {
			return textproto.Header{}, nil, nil, err
		}
		b, berr := io.ReadAll(p)
		return p.Header, b, berr, nil
	})
}

func splitterParts(body []byte, boundary string) []string {
	m := newMultipartSplitter(body, boundary)
	return readParts(func() (textproto.Header, []byte, error, error) {
		h, src, err := m.next()
		return h, src.data, src.err, err
	})
}

// FuzzMultipart holds the in-memory splitter to go-message's streaming reader: the
// same parts, bodies, errors and end, for any body and boundary.
func FuzzMultipart(f *testing.F) {
	for _, s := range []struct{ body, boundary string }{
		{"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n\r\nworld\r\n--b--\r\n", "b"},
		{"preamble\r\n--b\r\n\r\nx\r\n--bx\r\ny\r\n--b--", "b"},
		{"--b\n\nlf only\n--b\n\n\n--b--\n", "b"},
		{"--b\r\n\r\ntruncated", "b"},
		{"--b\r\n\r\ntruncated\r\n--", "b"},
		{"--b\r\n\r\ntruncated\r", "b"},
		{"--b\r\n\r\n--", "b"},
		{"--b\r\n\r\n--b\r\n\r\n\r\n--b--", "b"},
		{"--b\r\nbad header\r\n\r\n", "b"},
		{"--b\r\n\r\nx\r\n--b\r\n\r\ny\r\n--b--  \r\nepilogue", "b"},
		{"--b\r\n\r\nx\r\n--b\r\nunexpected\r\n", "b"},
		{"--b\r\n\r\nx\r\n--b--", ""},
		{"--b \t\r\n\r\nx\r\n--b--", "b"},
		{"x\r\n--b\r\n\r\n" + string(bytes.Repeat([]byte("y"), 5000)) + "\r\n--b--", "b"},
		{string(bytes.Repeat([]byte("p"), 5000)) + "\r\n--b\r\n\r\nz\r\n--b--", "b"},
		{"--b\r\nContent-Type: a;\r\n b=c\r\nX: y\r\ncontent-type: d\r\n\r\nbody\r\n--b--", "b"},
		{"--b\nA: b\r\r\n\r\nx\n--b--", "b"},
		{"--b\r\nA: b", "b"},
		{"--b\r\nA: b\r", "b"},
		{"--b\r\n: x\r\n y\r\nB : c \r\n\r\n--b--", "b"},
		{"--b\r\n cont\r\n\r\n--b--", "b"},
	} {
		f.Add([]byte(s.body), s.boundary)
	}
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		want, got := goMessageParts(body, boundary), splitterParts(body, boundary)
		if !slices.Equal(want, got) {
			t.Fatalf("boundary %q, body %q:\ngo-message: %q\nsplitter:   %q", boundary, body, want, got)
		}
	})
}
