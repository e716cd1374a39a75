package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		line string
		text string
		err  *Error
		prot bool
	}{
		{line: "+OK", text: ""},
		{line: "+OK 2 320", text: "2 320"},
		{line: "+ok hello", text: "hello"},
		{line: "-ERR", err: &Error{Command: "PASS"}},
		{line: "-ERR [AUTH] Authentication failed.", err: &Error{Command: "PASS", Code: "AUTH", Text: "Authentication failed."}},
		{line: "-err [sys/temp] later", err: &Error{Command: "PASS", Code: "SYS/TEMP", Text: "later"}},
		{line: "-ERR [unclosed code", err: &Error{Command: "PASS", Text: "[unclosed code"}},
		{line: "+OKAY", prot: true},
		{line: "-ERROR x", prot: true},
		{line: "", prot: true},
		{line: "* OK IMAP", prot: true},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			text, err := parseStatus("PASS", tc.line)
			switch {
			case tc.prot:
				assert.ErrorIs(t, err, ErrProtocol)
			case tc.err != nil:
				var perr *Error
				if assert.True(t, errors.As(err, &perr), "%v", err) {
					assert.Equal(t, *tc.err, *perr)
				}
			default:
				assert.NoError(t, err)
				assert.Equal(t, tc.text, text)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	assert.Equal(t, "pop3 PASS: -ERR [AUTH] Authentication failed.", (&Error{Command: "PASS", Code: "AUTH", Text: "Authentication failed."}).Error())
	assert.Equal(t, "pop3 greeting: -ERR", (&Error{}).Error())
}

func TestCapabilities(t *testing.T) {
	c := parseCapabilities([]string{"TOP", "uidl", "SASL PLAIN LOGIN", "LOGIN-DELAY 900 USER", "", "IMPLEMENTATION Dovecot"})
	assert.True(t, c.Has("top"))
	assert.True(t, c.Has("UIDL"))
	assert.True(t, c.SASL("login"))
	assert.False(t, c.SASL("XOAUTH2"))
	assert.Equal(t, 900e9, float64(c.LoginDelay()))
	assert.Zero(t, Capabilities{}.LoginDelay())
}

// unstuff is the reference of readData: the lines up to a line ".", each with a leading
// dot removed.
func unstuff(in []byte) ([]byte, bool) {
	var out bytes.Buffer
	for len(in) > 0 {
		i := bytes.IndexByte(in, '\n')
		if i < 0 {
			return nil, false
		}
		line := in[:i+1]
		in = in[i+1:]
		if string(line) == ".\r\n" || string(line) == ".\n" {
			return out.Bytes(), true
		}
		out.Write(bytes.TrimPrefix(line, []byte(".")))
	}
	return nil, false
}

func TestReadData(t *testing.T) {
	long := strings.Repeat("x", 10_000)
	tests := []struct{ in, want string }{
		{".\r\n", ""},
		{"a\r\n.\r\n", "a\r\n"},
		{"..\r\n...x\r\n.\r\n", ".\r\n..x\r\n"},
		{"a\n.b\n.\n", "a\nb\n"},
		{long + "\r\n." + long + "\r\n.\r\n", long + "\r\n" + long + "\r\n"},
		{".\r\nafter\r\n", ""},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		err := readData(bufio.NewReader(strings.NewReader(tc.in)), &out, 1<<20)
		assert.NoError(t, err)
		assert.Equal(t, tc.want, out.String())
	}
	err := readData(bufio.NewReader(strings.NewReader("a\r\nno end")), &bytes.Buffer{}, 1<<20)
	assert.Error(t, err)
	err = readData(bufio.NewReader(strings.NewReader(long+"\r\n.\r\n")), &bytes.Buffer{}, 100)
	assert.ErrorIs(t, err, ErrTooLarge)
}

func FuzzReadData(f *testing.F) {
	f.Add([]byte("a\r\n..b\r\n.\r\n"))
	f.Add([]byte(".\n"))
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		// A small buffer, so that long lines cross its boundary.
		err := readData(bufio.NewReaderSize(bytes.NewReader(in), 16), &out, 1<<20)
		want, ok := unstuff(in)
		if ok != (err == nil) {
			t.Fatalf("readData(%q) = %v, reference ok = %v", in, err, ok)
		}
		if ok && !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("readData(%q) = %q, want %q", in, out.Bytes(), want)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add("+OK 1 2")
	f.Add("-ERR [IN-USE] locked")
	f.Fuzz(func(t *testing.T, line string) {
		text, err := parseStatus("X", line)
		var perr *Error
		switch {
		case err == nil:
			if !hasPrefixFold(line, "+OK") || len(text) > len(line) {
				t.Fatalf("parseStatus(%q) accepted it as %q", line, text)
			}
		case errors.As(err, &perr):
			if !hasPrefixFold(line, "-ERR") {
				t.Fatalf("parseStatus(%q) made an -ERR of it", line)
			}
		case !errors.Is(err, ErrProtocol):
			t.Fatalf("parseStatus(%q) = %v", line, err)
		}
	})
}
