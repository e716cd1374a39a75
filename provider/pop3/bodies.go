package pop3

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/mailparse"
)

// bodies downloads the accepted candidates with RETR (pipelined where the server
// allows; those read whole for their header are not read again) and parses each in
// full into its email, into b.Emails, or reports it in b.Failed: too large to
// download, gone, or unparseable. Messages are parsed on GOMAXPROCS goroutines while
// the next ones arrive, so that the connection and the parsing overlap instead of
// taking turns; the results are in message order all the same. Only a broken session
// is an error, and then b is left as it was.
func (c *Conn) bodies(ctx context.Context, s *session, candidates []candidate, accepted []bool, attachmentLimit int64, b *provider.Batch) error {
	fails := make([]error, len(candidates)) // why candidate i failed; nil for an email
	p := c.startParsing(candidates, fails, mailparse.Options{AttachmentLimit: attachmentLimit})
	defer p.stop() // the parsing goroutines never outlive the call, even on a panic

	var msgs []MessageSize
	var idx []int // msgs[j] is candidates[idx[j]]
	for i, cd := range candidates {
		m := cd.m
		switch {
		case !accepted[i]:
		case cd.full != nil:
			p.parse(i, cd.full)
		case m.size > c.d.cfg.MaxMessageSize:
			fails[i] = crmsync.Errorf(crmsync.KindPermanent, "pop3 retr", "%s: message %s of %s is larger than the %s the provider downloads",
				c.who, m.uid, mailparse.ByteSize(m.size), mailparse.ByteSize(c.d.cfg.MaxMessageSize))
		default:
			msgs = append(msgs, MessageSize{Number: m.number, Size: m.size})
			idx = append(idx, i)
		}
	}
	err := s.cl.RetrMany(ctx, msgs, func(j int, raw []byte, err error) error {
		i := idx[j]
		if err != nil { // an -ERR: the message is gone
			fails[i] = c.classify("pop3 retr", fmt.Errorf("message %s: %w", candidates[i].m.uid, err), s)
			return nil
		}
		p.parse(i, raw)
		return nil
	})
	if err != nil {
		p.abandon.Store(true)
		p.stop()
		return c.classify("pop3 retr", err, s)
	}
	p.stop()

	for i, cd := range candidates {
		switch {
		case !accepted[i]:
		case fails[i] != nil:
			b.Failed = append(b.Failed, provider.FailedItem{
				Ref: provider.ItemRef{Folder: Inbox, ID: cd.m.uid}, MessageID: cd.e.MessageID, Err: fails[i],
			})
		default:
			b.Emails = append(b.Emails, cd.e)
		}
	}
	return nil
}

// parsing is the goroutines that parse downloaded messages into their candidates'
// emails. Its owner hands it messages with parse and waits for it with stop.
type parsing struct {
	jobs    chan parseJob
	wg      sync.WaitGroup
	stop    func()      // no more jobs: waits for the goroutines to end; safe twice
	abandon atomic.Bool // the batch failed: drop the jobs left rather than parse them
}

type parseJob struct {
	i   int // in candidates
	raw []byte
}

// startParsing starts GOMAXPROCS goroutines that parse candidates[i] from the raw
// message of each job, and set fails[i] when it cannot be parsed. A goroutine writes
// only the fails of its own jobs, which the owner reads after stop.
func (c *Conn) startParsing(candidates []candidate, fails []error, opts mailparse.Options) *parsing {
	n := max(1, runtime.GOMAXPROCS(0))
	p := &parsing{jobs: make(chan parseJob, n)}
	for range n {
		p.wg.Go(func() {
			for j := range p.jobs {
				if p.abandon.Load() {
					continue
				}
				cd := candidates[j.i]
				if err := mailparse.ParseBody(cd.e, j.raw, opts); err != nil {
					fails[j.i] = provider.Permanent("pop3 parse", fmt.Errorf("%s: message %s: %w", c.who, cd.m.uid, err))
				}
			}
		})
	}
	p.stop = sync.OnceFunc(func() {
		close(p.jobs)
		p.wg.Wait()
	})
	return p
}

// parse hands candidate i's raw message to a parsing goroutine, waiting while all are
// busy (which holds back the reading of the next answers: the server then waits on
// TCP's flow control).
func (p *parsing) parse(i int, raw []byte) { p.jobs <- parseJob{i, raw} }
