package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits of a Client.
const (
	// MaxLineLength bounds a response line (a status line, or one line of a CAPA, LIST
	// or UIDL listing), its line end included. RFC 2449 allows 512 octets; servers that
	// write longer lines are tolerated up to this bound. Message lines (TOP, RETR) are
	// not bounded: they are streamed.
	MaxLineLength = 8192
	// DefaultMaxMessageSize bounds what one Top or Retr reads when
	// Client.MaxMessageSize is zero.
	DefaultMaxMessageSize = 256 << 20
	// maxListing bounds the lines of one CAPA, LIST or UIDL listing.
	maxListing = 1 << 21
	// readBufferSize is the size of a Client's read buffer: large enough that a
	// message arrives in a few reads, not one per 4 KB.
	readBufferSize = 32 << 10
	// maxPresize bounds the buffer a message is read into before its bytes arrive.
	maxPresize = 16 << 20
)

// ErrProtocol is wrapped by the errors of a server that does not speak POP3 as RFC 1939
// says: a response that is neither +OK nor -ERR, a line longer than MaxLineLength, a
// malformed listing.
var ErrProtocol = errors.New("pop3: protocol error")

// ErrTooLarge is wrapped by the error of a Top or Retr whose message is larger than
// Client.MaxMessageSize. The connection is closed, since the rest of the message is
// not read.
var ErrTooLarge = errors.New("pop3: message larger than the client's limit")

// ErrClosed is returned by a command on a Client that was closed, by Close or Quit, or
// after an error that left the connection unusable (the sticky error wraps it).
var ErrClosed = errors.New("pop3: connection closed")

// Client is a POP3 client connection (RFC 1939, with RFC 2449 CAPA and RFC 2595 STLS).
// Its methods send one command each and wait for the answer, but for TopMany and
// RetrMany, which send one command per message and pipeline them when the server
// offers PIPELINING. An -ERR answer is an *Error and leaves the connection usable, any
// other error (network, timeout, protocol) closes it. Every method takes a context:
// its deadline bounds the command, and canceling it aborts the command (closing the
// connection).
//
// A Client runs one method at a time; Close may be called from any goroutine.
type Client struct {
	// Timeout bounds each wait for the server: a read or write that makes no progress
	// for this long fails with a timeout error. Zero means only the context bounds it.
	Timeout time.Duration
	// MaxMessageSize bounds what one Top or Retr reads, in bytes on the wire; zero
	// means DefaultMaxMessageSize.
	MaxMessageSize int64

	dc         *deadlineConn // the raw connection, with deadlines from the command's context
	host       string        // the host dialed, for StartTLS's ServerName
	r          *bufio.Reader // answers, from conn
	w          *bufio.Writer // commands, to conn
	greeting   string
	greeted    bool
	caps       Capabilities // nil until CAPA was asked since the last state change
	pipelining bool         // the last CAPA answer listed PIPELINING (RFC 2449)

	mu   sync.Mutex
	conn net.Conn // what commands are written to: dc, or TLS over dc
	err  error    // sticky: once set, the connection is closed and every command fails
}

// MessageSize is one line of a LIST answer.
type MessageSize struct {
	Number int   // the message number in this session, from 1
	Size   int64 // the size in octets, as the server counts them
}

// MessageUID is one line of a UIDL answer.
type MessageUID struct {
	Number int    // the message number in this session, from 1
	UID    string // the unique-id, stable across sessions
}

// Dial connects to a POP3 server at addr ("host:port") in plaintext and reads its
// greeting. ctx bounds the connection and the greeting. Use StartTLS to upgrade.
func Dial(ctx context.Context, addr string) (*Client, error) {
	nc, err := (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := NewClient(nc)
	c.host = hostOf(addr)
	if _, err := c.Greeting(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// DialTLS connects to a POP3 server at addr over implicit TLS (POP3S, RFC 8314),
// completes the handshake and reads the greeting. cfg may be nil; when its ServerName is
// empty, the host of addr is used.
func DialTLS(ctx context.Context, addr string, cfg *tls.Config) (*Client, error) {
	cfg = tlsConfigFor(hostOf(addr), cfg)
	nc, err := (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	dc := &deadlineConn{Conn: nc}
	tc := tls.Client(dc, cfg)
	dc.begin(ctx, 0)
	err = tc.HandshakeContext(ctx)
	dc.end()
	if err != nil {
		nc.Close()
		return nil, err
	}
	c := newClient(dc, tc)
	c.host = hostOf(addr)
	if _, err := c.Greeting(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// NewClient returns a Client on an open connection, plaintext or TLS. It does no I/O:
// the greeting is read by the first command (or by Greeting).
func NewClient(conn net.Conn) *Client {
	dc := &deadlineConn{Conn: conn}
	return newClient(dc, dc)
}

func newClient(dc *deadlineConn, conn net.Conn) *Client {
	c := &Client{dc: dc, conn: conn}
	c.setConn(conn)
	if addr := conn.RemoteAddr(); addr != nil {
		c.host = hostOf(addr.String())
	}
	return c
}

// setConn makes conn the connection answers are read from and commands written to.
func (c *Client) setConn(conn net.Conn) {
	c.r = bufio.NewReaderSize(conn, readBufferSize)
	c.w = bufio.NewWriter(conn)
}

// tlsConfigFor returns a copy of cfg (nil: a default) whose empty ServerName is host.
func tlsConfigFor(host string, cfg *tls.Config) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{}
	} else {
		cfg = cfg.Clone()
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		cfg.ServerName = host
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return cfg
}

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// Greeting returns the server's greeting text (after "+OK "), reading it first if no
// command has yet. A greeting of -ERR (a server refusing the connection, often for too
// many connections) is an *Error with an empty Command.
func (c *Client) Greeting(ctx context.Context) (string, error) {
	err := c.do(ctx, "", func() error { return nil })
	return c.greeting, err
}

// TLS returns the state of the TLS connection and true, or false if the connection is
// plaintext.
func (c *Client) TLS() (tls.ConnectionState, bool) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if tc, ok := conn.(*tls.Conn); ok {
		return tc.ConnectionState(), true
	}
	if tc, ok := c.dc.Conn.(*tls.Conn); ok {
		return tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// Capabilities returns the server's capabilities (CAPA, RFC 2449), asking once per
// state: the answer is kept until StartTLS or a login changes what the server offers.
// A server without CAPA answers -ERR; Capabilities then returns an empty set and no
// error. Whether the answer lists PIPELINING decides how TopMany and RetrMany send
// their commands, until the next answer (or StartTLS, after which the server has yet
// to say).
func (c *Client) Capabilities(ctx context.Context) (Capabilities, error) {
	if c.caps != nil {
		return c.caps, nil
	}
	var lines []string
	err := c.do(ctx, "CAPA", func() error {
		if _, err := c.command("CAPA", "CAPA"); err != nil {
			return err
		}
		var err error
		lines, err = c.readListing()
		return err
	})
	var perr *Error
	switch {
	case errors.As(err, &perr):
		c.caps, c.pipelining = Capabilities{}, false
		return c.caps, nil
	case err != nil:
		return nil, err
	}
	c.caps = parseCapabilities(lines)
	c.pipelining = c.caps.Has("PIPELINING")
	return c.caps, nil
}

// StartTLS upgrades the connection with STLS (RFC 2595) and completes the TLS handshake
// with cfg (nil: a default configuration). An empty ServerName is the host given to
// Dial, or for NewClient the remote address. The server's capabilities are asked again
// afterwards.
func (c *Client) StartTLS(ctx context.Context, cfg *tls.Config) error {
	cfg = tlsConfigFor(c.host, cfg)
	return c.do(ctx, "STLS", func() error {
		if _, err := c.command("STLS", "STLS"); err != nil {
			return err
		}
		// Anything the server sent after +OK would be read as if it came over TLS: a
		// STARTTLS injection. Refuse it.
		if c.r.Buffered() > 0 {
			return fmt.Errorf("%w: data after the STLS answer, before the TLS handshake", ErrProtocol)
		}
		tc := tls.Client(c.dc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		c.mu.Lock()
		c.conn = tc
		c.mu.Unlock()
		c.setConn(tc)
		c.caps, c.pipelining = nil, false
		return nil
	})
}

// User sends USER name, the first half of a USER/PASS login.
func (c *Client) User(ctx context.Context, name string) error {
	return c.simple(ctx, "USER", "USER", name)
}

// Pass sends PASS password, the second half of a USER/PASS login. The password is
// never part of an error.
func (c *Client) Pass(ctx context.Context, password string) error {
	err := c.simple(ctx, "PASS", "PASS", password)
	c.caps = nil
	return err
}

// AuthPlain logs in with AUTH PLAIN (RFC 5034) and an initial response, for servers
// that disable USER/PASS.
func (c *Client) AuthPlain(ctx context.Context, username, password string) error {
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + username + "\x00" + password))
	err := c.do(ctx, "AUTH", func() error {
		if err := c.send("AUTH PLAIN", ir); err != nil {
			return err
		}
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, "+ ") || line == "+" {
			// A challenge despite the initial response: cancel the exchange.
			if err := c.send("*"); err != nil {
				return err
			}
			if line, err = c.readLine(); err != nil {
				return err
			}
		}
		_, err = parseStatus("AUTH", line)
		return err
	})
	c.caps = nil
	return err
}

// Stat returns the number of messages in the maildrop and their total size (STAT).
func (c *Client) Stat(ctx context.Context) (count int, size int64, err error) {
	err = c.do(ctx, "STAT", func() error {
		text, err := c.command("STAT", "STAT")
		if err != nil {
			return err
		}
		f := strings.Fields(text)
		if len(f) < 2 {
			return fmt.Errorf("%w: STAT answered %q", ErrProtocol, text)
		}
		var err1, err2 error
		count, err1 = strconv.Atoi(f[0])
		size, err2 = strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || count < 0 || size < 0 {
			return fmt.Errorf("%w: STAT answered %q", ErrProtocol, text)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return count, size, nil
}

// List returns the number and size of every message (LIST).
func (c *Client) List(ctx context.Context) ([]MessageSize, error) {
	var out []MessageSize
	err := c.listing(ctx, "LIST", func(l string) error {
		n, rest, ok := messageNumber(l)
		size, err := strconv.ParseInt(firstField(rest), 10, 64)
		if !ok || err != nil || size < 0 {
			return fmt.Errorf("%w: LIST line %q", ErrProtocol, l)
		}
		out = append(out, MessageSize{Number: n, Size: size})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Uidl returns the unique-id of every message (UIDL). A server without UIDL answers
// -ERR, an *Error.
func (c *Client) Uidl(ctx context.Context) ([]MessageUID, error) {
	var out []MessageUID
	err := c.listing(ctx, "UIDL", func(l string) error {
		n, rest, ok := messageNumber(l)
		uid := firstField(rest)
		if !ok || uid == "" {
			return fmt.Errorf("%w: UIDL line %q", ErrProtocol, l)
		}
		out = append(out, MessageUID{Number: n, UID: uid})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Top returns the header of message n and the first lines lines of its body (TOP n
// lines), dot-unstuffed, with its line ends as the server sent them. Top(ctx, n, 0) is
// the header alone.
func (c *Client) Top(ctx context.Context, n, lines int) ([]byte, error) {
	if lines < 0 {
		return nil, errors.New("pop3: TOP with a negative line count")
	}
	return c.message(ctx, "TOP", strconv.Itoa(n), strconv.Itoa(lines))
}

// Retr returns message n whole (RETR), dot-unstuffed, with its line ends as the server
// sent them.
func (c *Client) Retr(ctx context.Context, n int) ([]byte, error) {
	return c.message(ctx, "RETR", strconv.Itoa(n))
}

// Dele marks message n for deletion (DELE); the server deletes it when the session
// ends with Quit.
func (c *Client) Dele(ctx context.Context, n int) error {
	return c.simple(ctx, "DELE", "DELE", strconv.Itoa(n))
}

// Rset unmarks the messages marked for deletion (RSET).
func (c *Client) Rset(ctx context.Context) error { return c.simple(ctx, "RSET", "RSET") }

// Noop does nothing (NOOP): it keeps the connection alive and checks it.
func (c *Client) Noop(ctx context.Context) error { return c.simple(ctx, "NOOP", "NOOP") }

// Quit ends the session (QUIT): the server deletes the messages marked with Dele, and
// the connection is closed whatever the answer.
func (c *Client) Quit(ctx context.Context) error {
	err := c.simple(ctx, "QUIT", "QUIT")
	c.fail(ErrClosed)
	return err
}

// Close closes the connection without QUIT: messages marked with Dele stay. It is safe
// to call more than once, and from any goroutine.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil
	}
	c.err = ErrClosed
	return c.conn.Close()
}

// fail makes err the sticky error and closes the connection, unless it failed before.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = ErrClosed
	if err != ErrClosed {
		c.err = fmt.Errorf("%w: %w", ErrClosed, err)
	}
	c.conn.Close()
}

// do runs one command's exchange f, reading the greeting first if need be. ctx bounds
// it; any error but an -ERR answer leaves the connection unusable and closes it.
func (c *Client) do(ctx context.Context, verb string, f func() error) error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.dc.begin(ctx, c.Timeout)
	defer c.dc.end()
	if !c.greeted {
		err = c.readGreeting()
	}
	if err == nil {
		err = f()
	}
	if err == nil {
		return nil
	}
	var perr *Error
	if errors.As(err, &perr) && c.greeted {
		return err // an -ERR answer: the session goes on
	}
	if cerr := contextErr(ctx, err); cerr != nil {
		// The failure is the context's doing: the connection was interrupted.
		err = fmt.Errorf("%w (%v)", cerr, err)
	}
	c.fail(err)
	if verb != "" {
		err = fmt.Errorf("%s: %w", verb, err)
	}
	return err
}

// contextErr returns the context's error if it caused err: the context is done, or
// err is the connection's timeout at the context's deadline (which the connection can
// see a moment before the context does).
func contextErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	var ne net.Error
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) && errors.As(err, &ne) && ne.Timeout() {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *Client) readGreeting() error {
	line, err := c.readLine()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("reading the greeting: %w", err)
	}
	text, err := parseStatus("", line)
	if err != nil {
		return err
	}
	c.greeted, c.greeting = true, text
	return nil
}

// simple runs a command whose answer is one status line.
func (c *Client) simple(ctx context.Context, verb string, args ...string) error {
	return c.do(ctx, verb, func() error {
		_, err := c.command(verb, args...)
		return err
	})
}

// listing runs a command whose +OK answer is followed by a multi-line listing, and
// calls line for each of its lines; a line it refuses breaks the connection.
func (c *Client) listing(ctx context.Context, verb string, line func(string) error) error {
	return c.do(ctx, verb, func() error {
		if _, err := c.command(verb, verb); err != nil {
			return err
		}
		lines, err := c.readListing()
		if err != nil {
			return err
		}
		for _, l := range lines {
			if err := line(l); err != nil {
				return err
			}
		}
		return nil
	})
}

// message runs TOP or RETR and reads the message that follows +OK.
func (c *Client) message(ctx context.Context, verb string, args ...string) ([]byte, error) {
	var msg []byte
	err := c.do(ctx, verb, func() error {
		if err := c.send(append([]string{verb}, args...)...); err != nil {
			return err
		}
		var err error
		msg, err = c.readMessage(verb, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	return msg, nil
}

// maxMessageSize is MaxMessageSize or its default.
func (c *Client) maxMessageSize() int64 {
	if c.MaxMessageSize <= 0 {
		return DefaultMaxMessageSize
	}
	return c.MaxMessageSize
}

// readMessage reads the answer to a TOP or RETR: the status line, and after +OK the
// message, dot-unstuffed, into a buffer sized for sizeHint bytes (LIST's size, or 0
// when unknown), grown if the message is larger. An -ERR answer is an *Error.
func (c *Client) readMessage(verb string, sizeHint int64) ([]byte, error) {
	line, err := c.readLine()
	if err != nil {
		return nil, err
	}
	if _, err := parseStatus(verb, line); err != nil {
		return nil, err
	}
	limit := c.maxMessageSize()
	// LIST counts the octets of the message as the server stores it; leave a little
	// room for a server that counts a few differently, so that the buffer need not
	// grow. A lying LIST cannot make it allocate more than the limit, nor more than
	// maxPresize ahead of what actually arrives.
	capacity := min(max(sizeHint, 0)+512, limit+3, maxPresize)
	return readData(c.r, make([]byte, 0, capacity), limit)
}

// command sends a command line and reads its status line. verb names the command in
// errors; args are the words of the line (args[0] is the verb as sent).
func (c *Client) command(verb string, args ...string) (string, error) {
	if err := c.send(args...); err != nil {
		return "", err
	}
	line, err := c.readLine()
	if err != nil {
		return "", err
	}
	return parseStatus(verb, line)
}

// send writes one command line. Arguments that would end the line early are refused,
// so that a user name or password cannot smuggle in a second command.
func (c *Client) send(words ...string) error {
	for _, w := range words {
		if strings.ContainsAny(w, "\r\n\x00") {
			return errors.New("pop3: a command argument holds a line break or NUL")
		}
	}
	c.w.WriteString(strings.Join(words, " "))
	c.w.WriteString("\r\n")
	return c.w.Flush()
}

// readLine reads one response line, at most MaxLineLength bytes with its line end, and
// returns it without the line end.
func (c *Client) readLine() (string, error) {
	return readLine(c.r)
}

func readLine(r *bufio.Reader) (string, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > MaxLineLength {
			return "", fmt.Errorf("%w: a response line is longer than %d bytes", ErrProtocol, MaxLineLength)
		}
		line = append(line, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		break
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return string(line), nil
}

// readListing reads the lines of a multi-line answer up to the terminating ".",
// dot-unstuffed.
func (c *Client) readListing() ([]string, error) {
	var lines []string
	for {
		line, err := c.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if line == "." {
			return lines, nil
		}
		if len(lines) >= maxListing {
			return nil, fmt.Errorf("%w: a listing of more than %d lines", ErrProtocol, maxListing)
		}
		lines = append(lines, strings.TrimPrefix(line, "."))
	}
}

// readData appends a multi-line answer from r to dst up to the terminating ".",
// dot-unstuffed, keeping the line ends as they are, and returns the extended slice.
// Lines are streamed, not bounded; the whole is bounded by limit bytes on the wire.
func readData(r *bufio.Reader, dst []byte, limit int64) ([]byte, error) {
	var read int64
	lineStart := true
	for {
		chunk, err := r.ReadSlice('\n')
		read += int64(len(chunk))
		if read > limit+3 { // the terminating ".\r\n" does not count
			return nil, fmt.Errorf("%w (%d bytes)", ErrTooLarge, limit)
		}
		if err != nil && err != bufio.ErrBufferFull {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if lineStart && len(chunk) > 0 && chunk[0] == '.' {
			if rest := chunk[1:]; string(rest) == "\r\n" || string(rest) == "\n" {
				return dst, nil
			}
			chunk = chunk[1:]
		}
		dst = append(dst, chunk...)
		lineStart = err == nil // ReadSlice stopped at '\n', not at a full buffer
	}
}

// messageNumber reads the message number that starts a LIST or UIDL line.
func messageNumber(line string) (int, string, bool) {
	num, rest, _ := strings.Cut(strings.TrimLeft(line, " "), " ")
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 {
		return 0, "", false
	}
	return n, strings.TrimLeft(rest, " "), true
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}

// deadlineConn applies the running command's context and the client's Timeout to each
// read and write of the connection under it, so that a server that stops answering, or
// a canceled context, ends the command.
type deadlineConn struct {
	net.Conn

	mu      sync.Mutex
	ctx     context.Context
	timeout time.Duration
	stop    func() bool
}

// begin sets the context and idle timeout of the command that starts.
func (d *deadlineConn) begin(ctx context.Context, timeout time.Duration) {
	d.mu.Lock()
	d.ctx, d.timeout = ctx, timeout
	d.mu.Unlock()
	// A canceled context interrupts a read or write that is waiting.
	d.stop = context.AfterFunc(ctx, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.Conn.SetDeadline(time.Unix(1, 0))
	})
}

// end clears what begin set.
func (d *deadlineConn) end() {
	d.stop()
	d.mu.Lock()
	d.ctx = nil
	d.mu.Unlock()
}

// arm sets the deadline of the next read or write: the command's context deadline or
// the idle timeout, whichever comes first. It fails if the context is done.
func (d *deadlineConn) arm(set func(time.Time) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var dl time.Time
	if d.timeout > 0 {
		dl = time.Now().Add(d.timeout)
	}
	if d.ctx != nil {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		if cd, ok := d.ctx.Deadline(); ok && (dl.IsZero() || cd.Before(dl)) {
			dl = cd
		}
	}
	return set(dl)
}

func (d *deadlineConn) Read(p []byte) (int, error) {
	if err := d.arm(d.Conn.SetReadDeadline); err != nil {
		return 0, err
	}
	return d.Conn.Read(p)
}

func (d *deadlineConn) Write(p []byte) (int, error) {
	if err := d.arm(d.Conn.SetWriteDeadline); err != nil {
		return 0, err
	}
	return d.Conn.Write(p)
}
