package crmsync_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want crmsync.Kind
	}{
		{"nil", nil, crmsync.KindNone},
		{"classified", crmsync.Errorf(crmsync.KindAuth, "imap login", "bad password"), crmsync.KindAuth},
		{"wrapped classified", fmt.Errorf("cycle: %w", crmsync.WithKind(crmsync.KindThrottled, "graph", errors.New("429"))), crmsync.KindThrottled},
		{"not found sentinel", fmt.Errorf("load: %w", crmsync.ErrNotFound), crmsync.KindNotFound},
		{"not supported", fmt.Errorf("act: %w", crmsync.ErrNotSupported), crmsync.KindPermanent},
		{"mapping conflict", &crmsync.MappingConflictError{Address: "a@b.test"}, crmsync.KindPermanent},
		{"validation", (&crmsync.Mailbox{}).Validate(), crmsync.KindPermanent},
		{"deadline", context.DeadlineExceeded, crmsync.KindTransient},
		{"unknown is transient", errors.New("something odd"), crmsync.KindTransient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, crmsync.KindOf(tc.err))
		})
	}
}

func TestKindRetryable(t *testing.T) {
	retry := map[crmsync.Kind]bool{crmsync.KindThrottled: true, crmsync.KindTransient: true, crmsync.KindCursorExpired: true}
	for k := crmsync.KindNone; k <= crmsync.KindPermanent; k++ {
		assert.Equal(t, retry[k], k.Retryable(), k.String())
	}
}

func TestErrorCarriesRetryAfter(t *testing.T) {
	err := fmt.Errorf("sync: %w", &crmsync.Error{Kind: crmsync.KindThrottled, Op: "graph delta", RetryAfter: 30 * time.Second, Err: errors.New("429")})
	assert.Equal(t, 30*time.Second, crmsync.RetryAfter(err))
	assert.Equal(t, time.Duration(0), crmsync.RetryAfter(errors.New("plain")))
	assert.Equal(t, "sync: graph delta: throttled (retry after 30s): 429", err.Error())
	assert.Nil(t, crmsync.WithKind(crmsync.KindAuth, "x", nil))
}

func TestMappingConflictIsErrMappingConflict(t *testing.T) {
	err := fmt.Errorf("map: %w", &crmsync.MappingConflictError{Address: "a@b.test", HeldBy: "mb1", HeldByOwner: crmsync.Owner{Kind: crmsync.OwnerUser, ID: "u1"}})
	assert.ErrorIs(t, err, crmsync.ErrMappingConflict)
	assert.Contains(t, err.Error(), "a@b.test is held by mailbox mb1 of user:u1")
}

func TestCredentialsNeverPrint(t *testing.T) {
	c := crmsync.Credentials{Username: "alice", Password: "hunter2", RefreshToken: "1//refresh"}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c),
		fmt.Sprintf("%v", crmsync.Mailbox{Credentials: c}), fmt.Sprintf("%+v", &crmsync.ServerProfile{Credentials: c})} {
		assert.NotContains(t, s, "hunter2")
		assert.NotContains(t, s, "1//refresh")
	}
}

func TestNormalizeAddress(t *testing.T) {
	got, err := crmsync.NormalizeAddress("  Alice@Example.TEST ")
	require.NoError(t, err)
	assert.Equal(t, "alice@example.test", got)
	for _, bad := range []string{"", "alice", "Alice <alice@example.test>", "a@b@c"} {
		_, err := crmsync.NormalizeAddress(bad)
		assert.Error(t, err, bad)
	}
}

func TestProfileValidateAndDefaults(t *testing.T) {
	p := &crmsync.ServerProfile{ID: "p", Kind: crmsync.ServerIMAP}
	require.NoError(t, p.Validate())
	assert.Equal(t, 10, p.Connections())
	assert.Equal(t, crmsync.DefaultConnectionTimeout, p.Timeout())
	assert.True(t, p.SentCopy())
	assert.EqualValues(t, 5<<20, p.AttachmentLimit())
	off := false
	p.KeepSentCopy = &off
	assert.False(t, p.SentCopy())

	for _, tc := range []struct {
		name string
		mod  func(*crmsync.ServerProfile)
		want string
	}{
		{"connections above 300", func(p *crmsync.ServerProfile) { p.MaxConnections = 301 }, "MaxConnections"},
		{"poll interval above a day", func(p *crmsync.ServerProfile) { p.MinPollInterval = 1441 * time.Minute }, "MinPollInterval"},
		{"timeout above 100 s", func(p *crmsync.ServerProfile) { p.ConnectionTimeout = 101 * time.Second }, "ConnectionTimeout"},
		{"attachment limit above 128 MB", func(p *crmsync.ServerProfile) { p.MaxAttachmentSize = 129 << 20 }, "MaxAttachmentSize"},
		{"no kind", func(p *crmsync.ServerProfile) { p.Kind = 0 }, "Kind"},
		{"no id", func(p *crmsync.ServerProfile) { p.ID = "" }, "ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := &crmsync.ServerProfile{ID: "p", Kind: crmsync.ServerIMAP}
			tc.mod(q)
			err := q.Validate()
			var ve *crmsync.ValidationError
			require.ErrorAs(t, err, &ve)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestEffectiveStartIsTheLaterDate(t *testing.T) {
	early := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	late := early.AddDate(0, 1, 0)
	p := &crmsync.ServerProfile{ProcessEmailFrom: early}
	m := &crmsync.Mailbox{ProcessEmailAfter: late}
	assert.Equal(t, late, m.EffectiveStart(p))
	p.ProcessEmailFrom, m.ProcessEmailAfter = late, early
	assert.Equal(t, late, m.EffectiveStart(p))
	assert.Equal(t, early, m.EffectiveStart(nil))
}

func TestMailboxValidateAndState(t *testing.T) {
	m := &crmsync.Mailbox{ID: "mb", Address: "a@example.test", ProfileID: "p", Owner: crmsync.Owner{Kind: crmsync.OwnerQueue, ID: "q"}}
	require.NoError(t, m.Validate())
	m.State(crmsync.Outgoing).Method = crmsync.DeliveryServerSideSync
	assert.Equal(t, crmsync.DeliveryServerSideSync, m.Outgoing.Method)
	assert.Nil(t, m.State(0))
	assert.False(t, m.Outgoing.Runnable(), "not tested yet")
	m.Outgoing.Test = crmsync.TestPassed
	assert.True(t, m.Outgoing.Runnable())

	bad := &crmsync.Mailbox{ID: "mb", Address: "not an address", Owner: crmsync.Owner{Kind: crmsync.OwnerUser}}
	err := bad.Validate()
	require.Error(t, err)
	for _, field := range []string{"Address", "ProfileID", "Owner.ID"} {
		assert.Contains(t, err.Error(), field)
	}
}

func TestEmailStatusCodes(t *testing.T) {
	// The product's codes are part of the contract with hosts.
	codes := map[crmsync.EmailStatus]uint8{
		crmsync.EmailDraft: 1, crmsync.EmailCompleted: 2, crmsync.EmailSent: 3, crmsync.EmailReceived: 4,
		crmsync.EmailCanceled: 5, crmsync.EmailPendingSend: 6, crmsync.EmailSending: 7, crmsync.EmailFailed: 8,
	}
	for s, c := range codes {
		assert.Equal(t, c, uint8(s), s.String())
	}
	assert.Equal(t, uint8(0), uint8(crmsync.StatusNotRun))
	assert.Equal(t, uint8(1), uint8(crmsync.StatusSuccess))
	assert.Equal(t, uint8(2), uint8(crmsync.StatusFailure))
}

func TestEmailCloneIsDeep(t *testing.T) {
	e := &crmsync.Email{To: []crmsync.Address{{Email: "a@x"}}, Attachments: []crmsync.Attachment{{Name: "f", Content: []byte("abc")}}}
	c := e.Clone()
	c.To[0].Email = "changed"
	c.Attachments[0].Content[0] = 'z'
	assert.Equal(t, "a@x", e.To[0].Email)
	assert.Equal(t, "abc", string(e.Attachments[0].Content))
}

func ExampleKindOf() {
	err := fmt.Errorf("incoming cycle: %w", crmsync.Errorf(crmsync.KindAuth, "imap login", "AUTHENTICATIONFAILED"))
	switch k := crmsync.KindOf(err); {
	case k.Retryable():
		fmt.Println("retry later")
	default:
		fmt.Println("disable and alert:", k)
	}
	// Output: disable and alert: auth
}

func TestSanitize(t *testing.T) {
	e := &crmsync.Email{
		Subject: "caf\xe9 \x00menu", TextBody: "ok", HTMLBody: "<p>\x00</p>",
		From: crmsync.Address{Name: "Bad\xffName", Email: "a@b.test"}, To: []crmsync.Address{{Name: "x\x00y", Email: "c@d.test"}},
		References: []string{"r\xfe@x"}, Notes: []string{"n\x00"},
		Attachments: []crmsync.Attachment{{Name: "f\xff.pdf", Content: []byte{0, 0xff}}},
	}
	e.Sanitize()
	assert.Equal(t, "caf\uFFFD menu", e.Subject)
	assert.Equal(t, "ok", e.TextBody)
	assert.Equal(t, "<p></p>", e.HTMLBody)
	assert.Equal(t, "Bad\uFFFDName", e.From.Name)
	assert.Equal(t, "xy", e.To[0].Name)
	assert.Equal(t, "r\uFFFD@x", e.References[0])
	assert.Equal(t, "n", e.Notes[0])
	assert.Equal(t, "f\uFFFD.pdf", e.Attachments[0].Name)
	assert.Equal(t, []byte{0, 0xff}, e.Attachments[0].Content, "binary content is left alone")
}
