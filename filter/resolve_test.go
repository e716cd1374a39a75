package filter

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

func TestResolveParties(t *testing.T) {
	w := newWorld(t)
	// An address a contact of Bob's and a lead share: the contact wins by kind.
	w.dir.Add("shared@x.example", Party{Kind: PartyLead, ID: "l-1", OwnerID: "u-ann"})
	w.dir.Add("shared@x.example", Party{Kind: PartyContact, ID: "c-1", OwnerID: "u-bob"})
	// Two contacts: Ann's wins in Ann's mailbox, though its ID sorts later.
	w.dir.Add("twins@x.example", Party{Kind: PartyContact, ID: "c-a", OwnerID: "u-bob"})
	w.dir.Add("twins@x.example", Party{Kind: PartyContact, ID: "c-z", OwnerID: "u-ann"})
	// A user beats a contact with the same address.
	w.dir.Add("ann@crm.example", Party{Kind: PartyContact, ID: "c-ann", OwnerID: "u-bob"})
	// An unknown kind ranks last.
	w.dir.Add("odd@x.example", Party{Kind: 0, ID: "z-0"})
	w.dir.Add("odd@x.example", Party{Kind: PartyOther, ID: "o-9"})
	// 101 records: unresolved; 100: resolved.
	for i := range 101 {
		w.dir.Add("crowd@x.example", Party{Kind: PartyContact, ID: fmt.Sprintf("c-%03d", i)})
		if i < 100 {
			w.dir.Add("hundred@x.example", Party{Kind: PartyContact, ID: fmt.Sprintf("c-%03d", i)})
		}
	}
	s := w.screener(t, nil)
	e := &crmsync.Email{
		MessageID: "m1",
		From:      crmsync.Address{Name: "Carl", Email: "carl@customer.example"},
		To:        []crmsync.Address{addr("Ann@crm.example"), addr("shared@x.example")},
		Cc:        []crmsync.Address{addr("twins@x.example"), addr("nobody@x.example"), addr("crowd@x.example"), addr("hundred@x.example"), addr("odd@x.example")},
		Bcc:       []crmsync.Address{addr("not an address")},
	}
	r, err := s.Resolve(context.Background(), w.ann, e)
	require.NoError(t, err)

	type got struct {
		role    Role
		address string
		id      string
		matches int
	}
	var gs []got
	for _, p := range r.Parties {
		g := got{p.Role, p.Address.Email, "", p.Matches}
		if p.Party != nil {
			g.id = p.Party.ID
		}
		gs = append(gs, g)
	}
	assert.Equal(t, []got{
		{RoleFrom, "carl@customer.example", "c-carl", 1},
		{RoleTo, "Ann@crm.example", "u-ann", 2},
		{RoleTo, "shared@x.example", "c-1", 2},
		{RoleCc, "twins@x.example", "c-z", 2},
		{RoleCc, "nobody@x.example", "", 0},
		{RoleCc, "crowd@x.example", "", 101},
		{RoleCc, "hundred@x.example", "c-000", 100},
		{RoleCc, "odd@x.example", "o-9", 2},
		{RoleBcc, "not an address", "", 0},
	}, gs)
	assert.Equal(t, "Carl", r.Parties[0].Address.Name, "addresses are kept as they came")
	assert.False(t, r.Internal)
	assert.Equal(t, []Activity{{MailboxID: "mb-ann", Direction: crmsync.DirectionIncoming}}, r.Activities)
}

func TestResolveRegarding(t *testing.T) {
	w := newWorld(t)
	rules, err := NewFolderRules(FolderRule{Folder: "INBOX/Contoso", RegardingID: "acct-contoso"})
	require.NoError(t, err)
	s := w.screener(t, func(c *Config) {
		c.Folders = func(*crmsync.Mailbox) *FolderRules { return rules }
	})
	reply := func(folder, manual string) *crmsync.Email {
		return &crmsync.Email{MessageID: "r", InReplyTo: "offer@crm.example", Folder: folder, RegardingID: manual,
			From: addr("carl@customer.example")}
	}
	tests := []struct {
		name        string
		email       *crmsync.Email
		regarding   string
		correlation crmsync.Correlation
		correlated  string
	}{
		{"copied from the correlated email", reply("INBOX", ""), "opp-1", crmsync.CorrelationInReplyTo, "e-offer"},
		{"the folder's record wins", reply("INBOX/Contoso", ""), "acct-contoso", crmsync.CorrelationSkipped, ""},
		{"the folder's record wins over a manual one", reply("INBOX/Contoso", "case-7"), "acct-contoso", crmsync.CorrelationSkipped, ""},
		{"a manual record is kept", reply("INBOX", "case-7"), "case-7", crmsync.CorrelationSkipped, "e-offer"},
		{"no correlation", &crmsync.Email{MessageID: "x", Subject: "hi"}, "", crmsync.CorrelationNone, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := s.Resolve(context.Background(), w.ann, tt.email)
			require.NoError(t, err)
			assert.Equal(t, tt.regarding, r.Regarding)
			assert.Equal(t, tt.correlation, r.Correlation)
			if tt.correlated == "" {
				assert.Nil(t, r.Correlated)
			} else {
				require.NotNil(t, r.Correlated)
				assert.Equal(t, tt.correlated, r.Correlated.ID)
			}
			e := tt.email.Clone()
			r.Apply(e)
			assert.Equal(t, tt.regarding, e.RegardingID)
			assert.Equal(t, tt.correlation, e.Correlation)
		})
	}
}

func TestResolutionApplyParties(t *testing.T) {
	w := newWorld(t)
	w.dir.Add("odd@x.example", Party{Kind: 0, ID: "z-0"})
	s := w.screener(t, nil)
	e := &crmsync.Email{
		MessageID: "m1",
		From:      crmsync.Address{Name: "Carl", Email: "carl@customer.example"},
		To:        []crmsync.Address{addr("ann@crm.example")},
		Cc:        []crmsync.Address{{Name: "Nobody", Email: "nobody@x.example"}, addr("odd@x.example")},
		// Parties left by an earlier resolution are replaced.
		Parties: []crmsync.Party{{Role: crmsync.PartyBcc, Address: addr("stale@x.example")}},
	}
	r, err := s.Resolve(context.Background(), w.ann, e)
	require.NoError(t, err)
	r.Apply(e)
	assert.Equal(t, []crmsync.Party{
		{Role: crmsync.PartyFrom, Address: crmsync.Address{Name: "Carl", Email: "carl@customer.example"}, RecordKind: "contact", RecordID: "c-carl"},
		{Role: crmsync.PartyTo, Address: addr("ann@crm.example"), RecordKind: "user", RecordID: "u-ann"},
		{Role: crmsync.PartyCc, Address: crmsync.Address{Name: "Nobody", Email: "nobody@x.example"}},
		{Role: crmsync.PartyCc, Address: addr("odd@x.example"), RecordKind: "other", RecordID: "z-0"},
	}, e.Parties)

	Resolution{}.Apply(e)
	assert.Nil(t, e.Parties, "an email without addresses has no parties")
}

func TestResolveActivitiesBetweenUsers(t *testing.T) {
	w := newWorld(t)
	fromBob := &crmsync.Email{MessageID: "lunch", From: addr("bob@crm.example"), To: []crmsync.Address{addr("ann@crm.example")}}
	fromQueue := &crmsync.Email{MessageID: "q", From: addr("support@crm.example"), To: []crmsync.Address{addr("ann@crm.example")}}
	toCarl := &crmsync.Email{MessageID: "fyi", From: addr("bob@crm.example"), To: []crmsync.Address{addr("carl@customer.example")}}
	tests := []struct {
		name     string
		email    *crmsync.Email
		one      bool
		internal bool
		want     []Activity
	}{
		{"two activities by default", fromBob, false, true, []Activity{
			{MailboxID: "mb-bob", Direction: crmsync.DirectionOutgoing},
			{MailboxID: "mb-ann", Direction: crmsync.DirectionIncoming}}},
		{"one activity when the host says so", fromBob, true, true, []Activity{
			{MailboxID: "mb-ann", Direction: crmsync.DirectionIncoming}}},
		{"a queue is internal too", fromQueue, false, true, []Activity{
			{MailboxID: "mb-support", Direction: crmsync.DirectionOutgoing},
			{MailboxID: "mb-ann", Direction: crmsync.DirectionIncoming}}},
		{"a user writing to a customer is not internal", toCarl, false, false, []Activity{
			{MailboxID: "mb-ann", Direction: crmsync.DirectionIncoming}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := w.screener(t, func(c *Config) { c.OneActivity = tt.one })
			r, err := s.Resolve(context.Background(), w.ann, tt.email)
			require.NoError(t, err)
			assert.Equal(t, tt.internal, r.Internal)
			assert.Equal(t, tt.want, r.Activities)
		})
	}
}

func TestStoreMailboxes(t *testing.T) {
	w := newWorld(t)
	sm := StoreMailboxes{Store: fakeMailboxStore{w.mbs.MemMailboxes}}
	got, err := sm.MailboxesByAddress(context.Background(), []string{"ann@crm.example", "nobody@x.example", "ann@crm.example"})
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "mb-ann", got["ann@crm.example"].ID)
	_, err = sm.MailboxesByAddress(context.Background(), []string{"boom@x.example"})
	assert.Error(t, err)
}

type fakeMailboxStore struct{ m *MemMailboxes }

func (f fakeMailboxStore) MailboxByAddress(ctx context.Context, a string) (*crmsync.Mailbox, error) {
	if a == "boom@x.example" {
		return nil, fmt.Errorf("store down")
	}
	got, _ := f.m.MailboxesByAddress(ctx, []string{a})
	if mb := got[a]; mb != nil {
		return mb, nil
	}
	return nil, fmt.Errorf("mailbox %s: %w", a, crmsync.ErrNotFound)
}

func TestMemDirectory(t *testing.T) {
	d := NewMemDirectory()
	p := Party{Kind: PartyContact, ID: "c1"}
	d.Add("A@x.example", p)
	d.Add("a@x.example", p)
	got, err := d.PartiesByAddress(context.Background(), []string{"a@x.example", "b@x.example"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]Party{"a@x.example": {p}}, got)
	d.Remove("a@X.example", p)
	got, _ = d.PartiesByAddress(context.Background(), []string{"a@x.example"})
	assert.Empty(t, got)
	for k := PartyUser; k <= PartyOther; k++ {
		assert.NotContains(t, k.String(), "party-kind")
	}
}
