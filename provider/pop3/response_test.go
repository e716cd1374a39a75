package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
		for _, capacity := range []int{0, 3, len(tc.want), 2 * len(tc.want)} {
			out, err := readData(bufio.NewReader(strings.NewReader(tc.in)), make([]byte, 0, capacity), 1<<20)
			assert.NoError(t, err)
			assert.Equal(t, tc.want, string(out), "buffer of %d bytes", capacity)
		}
	}
	out, err := readData(bufio.NewReader(strings.NewReader("b\r\n.\r\n")), []byte("a"), 1<<20)
	require.NoError(t, err)
	assert.Equal(t, "ab\r\n", string(out), "appended")
	_, err = readData(bufio.NewReader(strings.NewReader("a\r\nno end")), nil, 1<<20)
	assert.Error(t, err)
	_, err = readData(bufio.NewReader(strings.NewReader(long+"\r\n.\r\n")), nil, 100)
	assert.ErrorIs(t, err, ErrTooLarge)
}

func FuzzReadData(f *testing.F) {
	f.Add([]byte("a\r\n..b\r\n.\r\n"))
	f.Add([]byte(".\n"))
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, in []byte) {
		// A small buffer, so that long lines cross its boundary.
		out, err := readData(bufio.NewReaderSize(bytes.NewReader(in), 16), make([]byte, 0, len(in)/2), 1<<20)
		want, ok := unstuff(in)
		if ok != (err == nil) {
			t.Fatalf("readData(%q) = %v, reference ok = %v", in, err, ok)
		}
		if ok && !bytes.Equal(out, want) {
			t.Fatalf("readData(%q) = %q, want %q", in, out, want)
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

// BenchmarkReadData reads a 25 KB message of 78-byte lines, the benchmark mailbox's
// average, into a buffer sized from its LIST size.
func BenchmarkReadData(b *testing.B) {
	var msg bytes.Buffer
	for msg.Len() < 25<<10 {
		msg.WriteString(strings.Repeat("x", 76) + "\r\n")
	}
	wire := append(append([]byte(nil), msg.Bytes()...), ".\r\n"...)
	r := bufio.NewReaderSize(bytes.NewReader(nil), readBufferSize)
	b.SetBytes(int64(len(wire)))
	for b.Loop() {
		r.Reset(bytes.NewReader(wire))
		out, err := readData(r, make([]byte, 0, msg.Len()+512), 1<<30)
		if err != nil || len(out) != msg.Len() {
			b.Fatal(err, len(out))
		}
	}
}
