package pop3

import (
	"context"
	"errors"
	"strconv"
)

// maxInFlight bounds the commands a pipelined exchange has sent and not yet read the
// answer of. The client writes commands only between answers, on the goroutine that
// reads them, so it must never block on a write: if the server stops reading (because
// its own writes block on answers the client has yet to read), what the client wrote
// must still fit in the socket buffers between them, the client's send buffer and the
// server's receive buffer, which are several kilobytes at the very least. 100 commands
// of at most 27 bytes ("TOP 2147483647 2147483647\r\n") are under 3 KB, in one TLS
// record or TCP write per refill. The window is refilled when half of it has been
// answered, so the server always has commands queued: a batch of n messages costs
// about n/50 writes, and no round trip waits on an empty pipe.
const maxInFlight = 100

// TopMany sends TOP n lines for each n of nums and calls f with each answer, in the
// order of nums: i is the index in nums, and msg the message's header and first lines
// lines of its body, dot-unstuffed, as Top returns them; or err is the server's -ERR
// answer for that message (an *Error, such as for a message another session deleted),
// and the following messages are still read. f owns msg: the client does not touch it
// again, so f may hand it to another goroutine.
//
// When the server's capabilities (the last Capabilities answer) list PIPELINING, the
// commands are pipelined (RFC 2449): sent ahead of the answers, at most 100 unanswered
// at any time, so that a whole batch costs about one round trip. Otherwise they are
// sent one at a time, each after the previous answer.
//
// The error TopMany returns ended the exchange: the network, the context, a protocol
// error, a message larger than MaxMessageSize, or an error f returned, which stops the
// exchange there. Each closes the connection, since answers to commands already sent
// may still be on their way. f is not called again after it fails or the exchange
// fails, and never after TopMany returns.
func (c *Client) TopMany(ctx context.Context, nums []int, lines int, f func(i int, msg []byte, err error) error) error {
	if lines < 0 {
		return errors.New("pop3: TOP with a negative line count")
	}
	return c.pipeline(ctx, "TOP", len(nums), func(b []byte, i int) []byte {
		b = append(b, "TOP "...)
		b = strconv.AppendInt(b, int64(nums[i]), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(lines), 10)
		return append(b, "\r\n"...)
	}, func(int) int64 { return 0 }, f)
}

// RetrMany sends RETR for each message of msgs and calls f with each answer, in the
// order of msgs: i is the index in msgs, and msg the whole message, dot-unstuffed, as
// Retr returns it; or err is the server's -ERR answer for that message (an *Error),
// and the following messages are still read. A message's Size, as LIST gave it, sizes
// the buffer it is read into (zero when unknown); a message larger than its Size is
// read all the same, up to MaxMessageSize. f owns msg: the client does not touch it
// again, so f may hand it to another goroutine.
//
// RetrMany pipelines its commands, and fails, as TopMany does.
func (c *Client) RetrMany(ctx context.Context, msgs []MessageSize, f func(i int, msg []byte, err error) error) error {
	return c.pipeline(ctx, "RETR", len(msgs), func(b []byte, i int) []byte {
		b = append(b, "RETR "...)
		b = strconv.AppendInt(b, int64(msgs[i].Number), 10)
		return append(b, "\r\n"...)
	}, func(i int) int64 { return msgs[i].Size }, f)
}

// pipeline runs n commands of verb whose answers are messages: line appends the i-th
// command to a buffer, sizeHint gives the i-th message's expected size, and f is
// called with each answer in order. See TopMany.
func (c *Client) pipeline(ctx context.Context, verb string, n int, line func(b []byte, i int) []byte,
	sizeHint func(i int) int64, f func(i int, msg []byte, err error) error) error {
	if n == 0 {
		return nil
	}
	window := 1
	if c.pipelining {
		window = maxInFlight
	}
	return c.do(ctx, verb, func() error {
		var cmds []byte
		sent := 0
		for done := 0; done < n; done++ {
			if sent < n && sent-done <= window/2 {
				// Refill the window: at most window commands are unanswered.
				cmds = cmds[:0]
				for k := min(n, done+window); sent < k; sent++ {
					cmds = line(cmds, sent)
				}
				if _, err := c.w.Write(cmds); err != nil {
					return err
				}
				if err := c.w.Flush(); err != nil {
					return err
				}
			}
			msg, err := c.readMessage(verb, sizeHint(done))
			var perr *Error
			if err != nil && !errors.As(err, &perr) {
				return err
			}
			if ferr := f(done, msg, err); ferr != nil {
				// The answers to the commands sent after this one are still coming:
				// the session is out of step, so it ends here, whatever ferr is.
				c.fail(ferr)
				return ferr
			}
		}
		return nil
	})
}
