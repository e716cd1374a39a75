package filter

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

func TestFolderRulesValidate(t *testing.T) {
	tests := []struct {
		folder string
		ok     bool
	}{
		{"INBOX/Contoso", true},
		{"Inbox/Contoso", true},
		{"inbox.Contoso", true},
		{"INBOX/Customers/Contoso", true},
		{"INBOX", false},
		{"INBOX/", false},
		{"INBOX/  ", false},
		{"Sent/Contoso", false},
		{"INBOXES/Contoso", false},
		{"Contoso", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.folder, func(t *testing.T) {
			var r FolderRules
			err := r.Add(tt.folder, "account-1")
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			assert.True(t, errors.Is(err, ErrFolderNotUnderInbox), "%v", err)
			var ve *crmsync.ValidationError
			assert.True(t, errors.As(err, &ve))
		})
	}
	var r FolderRules
	assert.Error(t, r.Add("INBOX/x", " "), "empty regarding")
}

func TestFolderRulesLimit(t *testing.T) {
	var rs []FolderRule
	for i := range MaxFolderRules {
		rs = append(rs, FolderRule{Folder: fmt.Sprintf("INBOX/f%d", i), RegardingID: fmt.Sprintf("r%d", i)})
	}
	r, err := NewFolderRules(rs...)
	require.NoError(t, err)
	assert.Equal(t, 25, r.Len())

	err = r.Add("INBOX/one-more", "x")
	assert.True(t, errors.Is(err, ErrTooManyFolderRules))
	assert.Regexp(t, regexp.MustCompile(`more than 25 folder tracking rules`), err.Error())

	require.NoError(t, r.Add("inbox/f3", "changed"), "replacing a rule is not a new one")
	got, ok := r.Lookup("INBOX/f3")
	assert.True(t, ok)
	assert.Equal(t, "changed", got)

	assert.True(t, r.Remove("INBOX/f0"))
	assert.False(t, r.Remove("INBOX/f0"))
	assert.NoError(t, r.Add("INBOX/one-more", "x"))

	_, err = NewFolderRules(append(rs, FolderRule{Folder: "INBOX/26", RegardingID: "y"})...)
	assert.True(t, errors.Is(err, ErrTooManyFolderRules))
}

func TestFolderRulesRegardingWinsOverManual(t *testing.T) {
	r, err := NewFolderRules(FolderRule{Folder: "INBOX/Contoso", RegardingID: "account-contoso"})
	require.NoError(t, err)
	tests := []struct{ folder, manual, want string }{
		{"INBOX/Contoso", "opportunity-9", "account-contoso"},
		{"INBOX/Contoso", "", "account-contoso"},
		{"INBOX/contoso", "opportunity-9", "opportunity-9"}, // below INBOX names are exact
		{"INBOX", "opportunity-9", "opportunity-9"},
		{"", "", ""},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, r.Regarding(tt.folder, tt.manual), "%+v", tt)
	}
	assert.Equal(t, []FolderRule{{Folder: "INBOX/Contoso", RegardingID: "account-contoso"}}, r.Rules())
}

func TestNewMessageID(t *testing.T) {
	re := regexp.MustCompile(`^crm\.[0-9a-z]+\.[a-z2-7]{26}@example\.com$`)
	seen := make(map[string]bool)
	for range 1000 {
		id := NewMessageID("Example.COM")
		require.Regexp(t, re, id)
		require.False(t, seen[id])
		seen[id] = true
	}
	for _, d := range []string{"", "bad domain", "a..b", "ex@mple", strings.Repeat("a", 254)} {
		assert.True(t, strings.HasSuffix(NewMessageID(d), "@crmsync.invalid"), d)
	}
	assert.Equal(t, "example.com", DomainOf("ann@example.com"))
	assert.Equal(t, "", DomainOf("nobody"))
}
