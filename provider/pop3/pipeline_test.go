package pop3_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/pop3"
)

// maxInFlight is the client's bound on unanswered pipelined commands.
const maxInFlight = 100

// pipelineModes runs a test against a server with PIPELINING and one without.
var pipelineModes = []struct {
	name         string
	noPipelining bool
}{
	{"pipelining", false},
	{"one at a time", true},
}

// checkPipelining checks how the client sent its commands: ahead of the answers, but
// never more than maxInFlight unanswered, to a server that offers PIPELINING; else
// each after the previous answer.
func checkPipelining(t *testing.T, srv *fakeServer, noPipelining bool) {
	t.Helper()
	if noPipelining {
		assert.Zero(t, srv.maxQueued(), "without PIPELINING, each command waits for the previous answer")
		return
	}
	assert.Greater(t, srv.maxQueued(), 1, "commands are pipelined")
	assert.Less(t, srv.maxQueued(), maxInFlight, "at most %d commands are unanswered", maxInFlight)
}

// noLeak checks, once the test and its cleanups are done, that it left no goroutine
// behind (call it first: cleanups run last-registered first).
func noLeak(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// loggedIn returns a client logged in to ann's maildrop on srv, having asked CAPA.
func loggedIn(t *testing.T, srv *fakeServer) *pop3.Client {
	t.Helper()
	ctx := ctxTimeout(t)
	cl := dialClient(t, srv.addr)
	_, err := cl.Capabilities(ctx)
	require.NoError(t, err)
	require.NoError(t, cl.User(ctx, ann))
	require.NoError(t, cl.Pass(ctx, annPW))
	return cl
}

// pipelineMessage is message i, dot-stuffed on the wire when i is a multiple of 7,
// and of a size that varies with i.
func pipelineMessage(i int) []byte {
	body := strings.Repeat(fmt.Sprintf("line %d of a body\r\n", i), i%13)
	if i%7 == 0 {
		body += ".a line that starts with a dot\r\n.\r\n..\r\n"
	}
	return []byte(fmt.Sprintf("Subject: message %d\r\nMessage-ID: <m%d@example.test>\r\n\r\n%s", i, i, body))
}

func sizes(from, n int, size func(i int) int64) []pop3.MessageSize {
	var out []pop3.MessageSize
	for i := from; i < from+n; i++ {
		out = append(out, pop3.MessageSize{Number: i, Size: size(i)})
	}
	return out
}

func numbers(from, n int) []int {
	var out []int
	for i := from; i < from+n; i++ {
		out = append(out, i)
	}
	return out
}

// TestTopManyRetrMany reads more messages than the pipeline's window in one call each
// of TopMany and RetrMany: every answer reaches its own index, in order, whatever the
// size LIST gave (exact, unknown, too small, too large).
func TestTopManyRetrMany(t *testing.T) {
	const n = 2*maxInFlight + 37
	for _, mode := range pipelineModes {
		t.Run(mode.name, func(t *testing.T) {
			srv := newFakeServer(t, func(s *fakeServer) { s.noPipelining = mode.noPipelining })
			srv.addUser(ann, annPW)
			for i := 1; i <= n; i++ {
				srv.deliver(ann, fmt.Sprint("u", i), pipelineMessage(i))
			}
			cl := loggedIn(t, srv)
			ctx := ctxTimeout(t)

			next := 0
			err := cl.TopMany(ctx, numbers(1, n), 0, func(i int, msg []byte, err error) error {
				require.NoError(t, err)
				require.Equal(t, next, i, "in order")
				next++
				head, _, _ := strings.Cut(string(pipelineMessage(i+1)), "\r\n\r\n")
				assert.Equal(t, head+"\r\n\r\n", string(msg))
				return nil
			})
			require.NoError(t, err)
			assert.Equal(t, n, next)

			size := func(i int) int64 {
				exact := int64(len(pipelineMessage(i)))
				return [...]int64{exact, 0, exact / 2, exact * 3}[i%4]
			}
			next = 0
			err = cl.RetrMany(ctx, sizes(1, n, size), func(i int, msg []byte, err error) error {
				require.NoError(t, err)
				require.Equal(t, next, i, "in order")
				next++
				assert.Equal(t, string(pipelineMessage(i+1)), string(msg), "message %d, dot-unstuffed", i+1)
				return nil
			})
			require.NoError(t, err)
			assert.Equal(t, n, next)
			assert.Equal(t, n, srv.count("TOP"))
			assert.Equal(t, n, srv.count("RETR"))
			checkPipelining(t, srv, mode.noPipelining)
			require.NoError(t, cl.Noop(ctx), "the session goes on")

			// Nothing to read: nothing sent.
			require.NoError(t, cl.RetrMany(ctx, nil, func(int, []byte, error) error { panic("called") }))
			assert.Equal(t, n, srv.count("RETR"))
		})
	}
}

// TestPipelineERR checks that an -ERR answer in the middle of a pipeline (a message
// another session deleted) is reported for that message only.
func TestPipelineERR(t *testing.T) {
	for _, mode := range pipelineModes {
		t.Run(mode.name, func(t *testing.T) {
			srv := newFakeServer(t, func(s *fakeServer) {
				s.noPipelining = mode.noPipelining
				s.onCommand = func(_ net.Conn, verb, arg string) (string, bool) {
					if (verb == "RETR" || verb == "TOP") && strings.HasPrefix(arg, "3") {
						return "-ERR [SYS/PERM] Message 3 was deleted by another session", true
					}
					return "", false
				}
			})
			srv.addUser(ann, annPW)
			for i := 1; i <= 5; i++ {
				srv.deliver(ann, fmt.Sprint("u", i), pipelineMessage(i))
			}
			cl := loggedIn(t, srv)
			ctx := ctxTimeout(t)
			for _, verb := range []string{"TOP", "RETR"} {
				var got []string
				f := func(i int, msg []byte, err error) error {
					if err != nil {
						var perr *pop3.Error
						require.ErrorAs(t, err, &perr)
						assert.Equal(t, verb, perr.Command)
						assert.Equal(t, "SYS/PERM", perr.Code)
						assert.Nil(t, msg)
						got = append(got, fmt.Sprint(i, " -ERR"))
						return nil
					}
					got = append(got, fmt.Sprint(i, " ", strings.Contains(string(msg), fmt.Sprintf("message %d", i+1))))
					return nil
				}
				if verb == "TOP" {
					err := cl.TopMany(ctx, numbers(1, 5), 0, f)
					require.NoError(t, err)
				} else {
					err := cl.RetrMany(ctx, sizes(1, 5, func(int) int64 { return 100 }), f)
					require.NoError(t, err)
				}
				assert.Equal(t, []string{"0 true", "1 true", "2 -ERR", "3 true", "4 true"}, got, verb)
			}
			checkPipelining(t, srv, mode.noPipelining)
			require.NoError(t, cl.Noop(ctx), "an -ERR leaves the session usable")
		})
	}
}

// TestPipelineBroken checks what ends an exchange: the connection dropped in the
// middle of an answer, an error of the callback, the context. Each closes the
// connection; the callback is never called for a message that was not read whole.
func TestPipelineBroken(t *testing.T) {
	boom := errors.New("callback failed")
	tests := []struct {
		name     string
		failAt   int // the callback fails for this index
		dropAt   int // the server drops the connection in the middle of this message
		stallAt  int // the server stops in the middle of this message, until the context is done
		wantErr  error
		wantSeen int // the messages the callback got
	}{
		{name: "reset mid-RETR", dropAt: 3, wantSeen: 2},
		{name: "callback error", failAt: 1, wantErr: boom, wantSeen: 2},
		{name: "context canceled", stallAt: 4, wantErr: context.Canceled, wantSeen: 3},
	}
	for _, tc := range tests {
		for _, mode := range pipelineModes {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				release := make(chan struct{})
				srv := newFakeServer(t, func(s *fakeServer) {
					s.noPipelining = mode.noPipelining
					s.onRetr = func(nc net.Conn, n int, raw []byte) bool {
						if n != tc.dropAt && n != tc.stallAt {
							return false
						}
						nc.Write([]byte("+OK\r\n"))
						nc.Write(raw[:len(raw)/2])
						if n == tc.stallAt {
							<-release
						}
						nc.(*net.TCPConn).SetLinger(0) // Close sends RST
						return true
					}
				})
				t.Cleanup(func() { close(release) })
				srv.addUser(ann, annPW)
				for i := 1; i <= 6; i++ {
					srv.deliver(ann, fmt.Sprint("u", i), pipelineMessage(i))
				}
				cl := loggedIn(t, srv)
				ctx, cancel := context.WithCancel(ctxTimeout(t))
				defer cancel()
				if tc.stallAt > 0 {
					time.AfterFunc(100*time.Millisecond, cancel)
				}
				seen := 0
				start := time.Now()
				err := cl.RetrMany(ctx, sizes(1, 6, func(int) int64 { return 0 }), func(i int, msg []byte, err error) error {
					require.NoError(t, err)
					assert.Equal(t, string(pipelineMessage(i+1)), string(msg))
					seen++
					if tc.failAt > 0 && i == tc.failAt {
						return boom
					}
					return nil
				})
				require.Error(t, err)
				assert.Less(t, time.Since(start), 5*time.Second)
				var perr *pop3.Error
				assert.False(t, errors.As(err, &perr), "not an -ERR: %v", err)
				if tc.wantErr != nil {
					assert.ErrorIs(t, err, tc.wantErr)
				}
				if tc.dropAt > 0 {
					// What arrived before the reset may be lost with it.
					assert.LessOrEqual(t, seen, tc.wantSeen)
				} else {
					assert.Equal(t, tc.wantSeen, seen)
				}
				assert.ErrorIs(t, cl.Noop(ctxTimeout(t)), pop3.ErrClosed, "the connection is closed")
			})
		}
	}
}

// TestFetchPipelined checks that FetchIncoming pipelines its TOP and RETR commands to
// a server that offers PIPELINING, and sends them one at a time to one that does not,
// with the same batch either way: emails and failures in message order, whichever
// goroutine parsed them.
func TestFetchPipelined(t *testing.T) {
	var batches []*provider.Batch
	for _, mode := range pipelineModes {
		t.Run(mode.name, func(t *testing.T) {
			noLeak(t)
			e := newFakeEnv(t, crmsync.SecurityPlaintext, func(s *fakeServer) {
				s.noPipelining = mode.noPipelining
				s.onCommand = func(_ net.Conn, verb, arg string) (string, bool) {
					switch {
					case verb == "TOP" && (arg == "6 0" || arg == "9 0"):
						return "-ERR TOP refused", true // read whole with RETR instead
					case verb == "RETR" && (arg == "9" || arg == "11"):
						return "-ERR deleted by another session", true
					case verb == "RETR" && arg == "4":
						// TOP read a header, but RETR answers with a message without one.
						return "+OK\r\n\r\nthe header is gone\r\n.", true
					}
					return "", false
				}
			})
			e.dialer = pop3.NewDialer(pop3.Config{MaxMessageSize: 1000})
			for i := 1; i <= 40; i++ {
				var extra []string
				if i == 7 {
					extra = append(extra, "X-Pad: "+strings.Repeat("p", 2000))
				}
				e.srv.deliver(ann, fmt.Sprintf("uidl-%04d", i), message(i, extra...))
			}
			b := e.fetch(t, provider.FetchRequest{Screen: func(_ context.Context, h []*crmsync.Email) ([]bool, error) {
				v := make([]bool, len(h))
				for i, e := range h {
					v[i] = e.MessageID != "m2@example.test"
				}
				return v, nil
			}})
			batches = append(batches, b)
			checkPipelining(t, e.srv, mode.noPipelining)
			assert.Equal(t, 40, e.srv.count("TOP"))

			var want []string
			for i := 1; i <= 40; i++ {
				switch i {
				case 2, 4, 7, 9, 11:
				default:
					want = append(want, fmt.Sprintf("m%d@example.test", i))
				}
			}
			assert.Equal(t, want, messageIDs(b.Emails))
			for _, m := range b.Emails {
				assert.Contains(t, m.TextBody, "body of message", m.MessageID)
			}
			var failed []string
			for _, f := range b.Failed {
				failed = append(failed, fmt.Sprintf("%s %s", f.Ref.ID, crmsync.KindOf(f.Err)))
			}
			assert.Equal(t, []string{
				"uidl-0004 " + crmsync.KindPermanent.String(), // no header in the RETR answer
				"uidl-0007 " + crmsync.KindPermanent.String(), // larger than MaxMessageSize
				"uidl-0011 " + crmsync.KindNotFound.String(),  // RETR refused
			}, failed, "in message order; 9, gone before its header was read, is left out")
			uids, err := pop3.CursorUIDs(b.Cursor)
			require.NoError(t, err)
			assert.Len(t, uids, 40)
		})
	}
	if len(batches) == 2 {
		assert.Equal(t, messageIDs(batches[0].Emails), messageIDs(batches[1].Emails))
	}
}

// TestFetchDropMidPipeline checks that a connection reset in the middle of the
// pipelined RETRs fails the whole batch as transient, reports nothing, leaves no
// goroutine behind, and that the next FetchIncoming starts over on a new session.
func TestFetchDropMidPipeline(t *testing.T) {
	noLeak(t)
	var dropped atomic.Bool
	e := newFakeEnv(t, crmsync.SecurityPlaintext, func(s *fakeServer) {
		s.onRetr = func(nc net.Conn, n int, raw []byte) bool {
			if n != 12 || dropped.Swap(true) {
				return false
			}
			nc.Write([]byte("+OK\r\n"))
			nc.Write(raw[:len(raw)/2])
			nc.(*net.TCPConn).SetLinger(0) // Close sends RST
			return true
		}
	})
	e.deliver(t, 1, 30)
	c := e.conn(t)
	b, err := c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
	require.Error(t, err)
	assert.Nil(t, b, "nothing is half-reported")
	assert.Equal(t, crmsync.KindTransient, crmsync.KindOf(err), "%v", err)
	assert.Greater(t, e.srv.maxQueued(), 1, "the RETRs were pipelined")

	b, err = c.FetchIncoming(ctxTimeout(t), provider.FetchRequest{})
	require.NoError(t, err)
	assert.Equal(t, ids(1, 30), messageIDs(b.Emails))
	assert.Equal(t, 2, e.srv.loginCount(), "a new session")
}

// TestFetchCanceledMidPipeline checks that canceling the context aborts a fetch whose
// RETRs are pipelined, promptly, with the context's error.
func TestFetchCanceledMidPipeline(t *testing.T) {
	release := make(chan struct{})
	e := newFakeEnv(t, crmsync.SecurityPlaintext, func(s *fakeServer) {
		s.onRetr = func(nc net.Conn, n int, raw []byte) bool {
			if n != 5 {
				return false
			}
			nc.Write([]byte("+OK\r\n"))
			nc.Write(raw[:len(raw)/2])
			<-release
			return true
		}
	})
	t.Cleanup(func() { close(release) })
	e.deliver(t, 1, 10)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := e.conn(t).FetchIncoming(ctx, provider.FetchRequest{})
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 5*time.Second)
}
