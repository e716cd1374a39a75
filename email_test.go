package crmsync_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/crmsync/crmsync"
)

func TestEmailParties(t *testing.T) {
	e := &crmsync.Email{Parties: []crmsync.Party{
		{Role: crmsync.PartyFrom, Address: crmsync.Address{Name: "Carl\xff", Email: "carl@x.test"}, RecordKind: "contact", RecordID: "c-\x001"},
		{Role: crmsync.PartyCc, Address: crmsync.Address{Email: "nobody@x.test"}},
	}}
	c := e.Clone()
	c.Parties[0].RecordID = "changed"
	assert.Equal(t, "c-\x001", e.Parties[0].RecordID, "Clone copies the parties")

	e.Sanitize()
	assert.Equal(t, []crmsync.Party{
		{Role: crmsync.PartyFrom, Address: crmsync.Address{Name: "Carl\uFFFD", Email: "carl@x.test"}, RecordKind: "contact", RecordID: "c-1"},
		{Role: crmsync.PartyCc, Address: crmsync.Address{Email: "nobody@x.test"}},
	}, e.Parties)

	for r, want := range map[crmsync.PartyRole]string{crmsync.PartyFrom: "from", crmsync.PartyTo: "to", crmsync.PartyCc: "cc", crmsync.PartyBcc: "bcc", 9: "party-role(9)"} {
		assert.Equal(t, want, r.String())
	}
}
