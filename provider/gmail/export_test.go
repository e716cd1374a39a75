package gmail

import (
	"context"

	"github.com/crmsync/crmsync/provider"
)

// SetBase makes the Dialer's connections delegate to dial's instead of provider/imap through the bridge, so
// that engine-level tests run on providertest's fake (no network, no tokens).
func SetBase(d *Dialer, dial func(ctx context.Context, t provider.Target) (provider.Provider, error)) {
	d.newBase = func(ctx context.Context, t provider.Target) (baseConn, error) {
		p, err := dial(ctx, t)
		if err != nil {
			return nil, err
		}
		return p.(baseConn), nil
	}
}

// HasGmailExtensions reports whether the Conn's IMAP session announced X-GM-EXT-1.
func HasGmailExtensions(c *Conn) bool { return c.gmailSession() != nil }
