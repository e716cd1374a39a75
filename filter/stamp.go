package filter

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"sync"

	"github.com/crmsync/crmsync"
)

// Stamper stamps outgoing CRM email with a tracking token: the token goes at the end of
// the subject (TokenConfig.Stamp, which keeps subject plus token within 255 characters)
// and into Email.TrackingToken, and the email's other correlation keys are filled in
// (Screener.Keys), so that a reply whose threading headers were lost is still correlated
// by its token. It is the engine's Stamper (syncer.Config.Stamper).
//
// Each CRM user has a number (UserNumber) and a counter. The counters live in memory
// and start at a random value, so a restart does not reissue the tokens just given out;
// like the product's, a counter wraps after its largest value.
type Stamper struct {
	screener   *Screener
	userNumber func(ctx context.Context, e *crmsync.Email) (int64, error)

	mu   sync.Mutex
	gens map[int64]*TokenGen
}

// NewStamper returns a Stamper that uses s's token configuration; userNumber tells the
// number of the CRM user an email is sent for (it must fit the configured user digits).
func NewStamper(s *Screener, userNumber func(ctx context.Context, e *crmsync.Email) (int64, error)) *Stamper {
	return &Stamper{screener: s, userNumber: userNumber, gens: make(map[int64]*TokenGen)}
}

// Stamp stamps e. An email that already carries a token keeps it.
func (st *Stamper) Stamp(ctx context.Context, e *crmsync.Email) error {
	cfg := st.screener.corr.cfg.Token
	if _, ok := cfg.Find(e.Subject); !ok {
		n, err := st.userNumber(ctx, e)
		if err != nil {
			return err
		}
		gen, err := st.gen(cfg, n)
		if err != nil {
			return err
		}
		e.Subject = cfg.Stamp(e.Subject, gen.Next())
	}
	st.screener.Keys(e)
	return nil
}

func (st *Stamper) gen(cfg TokenConfig, n int64) (*TokenGen, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if g, ok := st.gens[n]; ok {
		return g, nil
	}
	g, err := NewTokenGen(cfg, n)
	if err != nil {
		return nil, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	g.SetCounter(int64(binary.LittleEndian.Uint64(b[:]) >> 1))
	st.gens[n] = g
	return g, nil
}
