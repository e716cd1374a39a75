package imap

import (
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// prefetch is what a cycle's next batch will most likely read, asked for ahead,
// pipelined with the current batch's FETCHes so that the server answers it with no
// round trip of its own:
//
//   - when the screen accepted every message of the last batch (an initial ingest, say),
//     the whole messages, with their dates and sizes, which arrive while the engine
//     stores the current batch; their headers are read from them, so the server reads
//     each message once. Config.PrefetchBytes bounds what is kept: a message past it is
//     read off the wire and dropped, and the batch asks for it again;
//   - otherwise, their headers, parsed while the current bodies arrive.
//
// The next FetchIncoming takes what it can use of it; its screen still sees every
// header before anything is tracked. The Conn owns it: its goroutine has ended before
// any other use of the session, and before Close returns; the FetchIncoming that takes
// it waits for it before returning.
type prefetch struct {
	folder      string
	validity    uint32
	headersDone chan struct{} // closed once headers and err are final
	done        chan struct{} // closed once bodies is set and the goroutine has ended
	headers     map[imap.UID]fetchedHeader
	err         error
	bodies      map[imap.UID][]byte // whole messages, from getRaw
}

// aheadFetch is what a FETCH of whole messages asked for ahead asks.
var aheadFetch = &imap.FetchOptions{
	UID: true, InternalDate: true, RFC822Size: true,
	BodySection: []*imap.FetchItemBodySection{fullSection},
}

// startPrefetch asks ahead for uids, as prefetch describes; it does not wait for the
// answers.
func (f *fetcher) startPrefetch(folder string, validity uint32, uids []imap.UID) {
	f.c.prefetch.release() // one in flight at a time (a call asks ahead once, at most)
	p := &prefetch{folder: folder, validity: validity, headersDone: make(chan struct{}), done: make(chan struct{})}
	f.c.prefetch = p
	if limit := f.c.d.cfg.PrefetchBytes; f.c.acceptedAll && limit > 0 {
		cmd := f.cl.Fetch(imap.UIDSetNum(uids...), aheadFetch)
		go func() {
			defer close(p.done)
			defer close(p.headersDone)
			p.readAhead(f.cl, cmd, len(uids), limit)
		}()
		return
	}
	cmd := f.cl.Fetch(imap.UIDSetNum(uids...), headerFetch)
	go func() {
		defer close(p.done)
		defer close(p.headersDone)
		bufs, err := cmd.Collect()
		if err != nil {
			p.err = err
			return
		}
		p.headers = parseHeaders(p.folder, p.validity, bufs)
	}()
}

// readAhead reads the answer to a FETCH of n whole messages asked for ahead: each
// message kept while they fit in limit bytes, and its header parsed as it arrives.
func (p *prefetch) readAhead(cl *imapclient.Client, cmd *imapclient.FetchCommand, n int, limit int64) {
	p.bodies = make(map[imap.UID][]byte, n)
	p.headers = make(map[imap.UID]fetchedHeader, n)
	var kept int64
	fits := func(size int64) bool {
		if kept+size > limit {
			return false // over the bound: the batch asks again
		}
		kept += size
		return true
	}
	err := readFull(cl, cmd, fits, func(b *imapclient.FetchMessageBuffer, raw []byte) {
		if raw == nil {
			return // over the bound, or without its bytes: the batch asks again
		}
		p.bodies[b.UID] = raw
		h := fetchedHeader{buf: b}
		if e, err := headerOnly(p.folder, p.validity, b.UID, raw); err == nil {
			e.Size = b.RFC822Size
			e.ReceivedAt = b.InternalDate
			h.e = e
		}
		p.headers[b.UID] = h // without an email: no readable header, which the batch reports
	})
	if err != nil {
		p.err = err // the whole prefetch fails, so that no message passes for expunged
	}
}

// usable reports whether p asked ahead for this folder as it is now.
func (p *prefetch) usable(folder string, validity uint32) bool {
	return p != nil && p.folder == folder && p.validity == validity
}

// body takes the prefetched whole message of uid, if there is one.
func (p *prefetch) body(folder string, validity uint32, uid imap.UID) []byte {
	if !p.usable(folder, validity) {
		return nil
	}
	<-p.done
	raw := p.bodies[uid]
	delete(p.bodies, uid)
	return raw
}

// release waits for p's goroutine and recycles the bodies no batch took.
func (p *prefetch) release() {
	if p == nil {
		return
	}
	<-p.done
	for uid, raw := range p.bodies {
		putRaw(raw)
		delete(p.bodies, uid)
	}
}

// waitHeaders waits for p's headers and returns the error of their FETCH.
func waitHeaders(p *prefetch) error {
	<-p.headersDone
	return p.err
}
