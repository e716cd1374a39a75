package imap

import (
	"errors"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

func TestProviderID(t *testing.T) {
	id := providerID("INBOX/Projects/2024", 42, 7)
	assert.Equal(t, "INBOX/Projects/2024/42/7", id)
	folder, v, uid, err := parseProviderID(id)
	require.NoError(t, err)
	assert.Equal(t, "INBOX/Projects/2024", folder)
	assert.Equal(t, uint32(42), v)
	assert.Equal(t, imap.UID(7), uid)
	for _, bad := range []string{"", "INBOX", "INBOX/1", "/1/2", "INBOX/x/2", "INBOX/1/0", "INBOX/1/-2"} {
		_, _, _, err := parseProviderID(bad)
		assert.Error(t, err, bad)
	}
}

func TestIMAPErrorKinds(t *testing.T) {
	c := &Conn{}
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	cases := []struct {
		err  error
		want crmsync.Kind
	}{
		{no(imap.ResponseCodeNonExistent, ""), crmsync.KindNotFound},
		{no(imap.ResponseCodeTryCreate, ""), crmsync.KindNotFound},
		{no(imap.ResponseCodeLimit, ""), crmsync.KindThrottled},
		{no("", "Too many simultaneous connections"), crmsync.KindThrottled},
		{no(imap.ResponseCodeOverQuota, ""), crmsync.KindPermanent},
		{no(imap.ResponseCodeServerBug, ""), crmsync.KindTransient},
		{&imap.Error{Type: imap.StatusResponseTypeBad, Text: "parse error"}, crmsync.KindPermanent},
		{errors.New("EOF"), crmsync.KindTransient},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, crmsync.KindOf(c.imapError("imap x", tc.err)), "%v", tc.err)
	}
	login := []struct {
		err  error
		want crmsync.Kind
	}{
		{no(imap.ResponseCodeAuthenticationFailed, ""), crmsync.KindAuth},
		{no("", "Login failed"), crmsync.KindAuth},
		{no(imap.ResponseCodeUnavailable, ""), crmsync.KindTransient},
		{no(imap.ResponseCodeUnavailable, "Maximum number of connections from user+IP exceeded"), crmsync.KindThrottled},
		{no("", "Maximum number of connections: too many"), crmsync.KindThrottled},
		{no(imap.ResponseCodePrivacyRequired, ""), crmsync.KindPermanent},
		{no(imap.ResponseCodeUnavailable, "Maximum number of connections from user+IP exceeded"), crmsync.KindThrottled},
		{no(imap.ResponseCodeUnavailable, "server going down"), crmsync.KindTransient},
	}
	for _, tc := range login {
		assert.Equal(t, tc.want, crmsync.KindOf(c.loginError(tc.err)), "%v", tc.err)
	}
}
