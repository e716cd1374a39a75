package filter

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/crmsync/crmsync"
)

// MaxFolderRules is the number of folder tracking rules one user may have.
const MaxFolderRules = 25

// Folder rule errors, matched with errors.Is.
var (
	// ErrFolderNotUnderInbox: a rule's folder is not a sub-folder of the Inbox.
	ErrFolderNotUnderInbox = errors.New("filter: folder is not under the Inbox")
	// ErrTooManyFolderRules: a user would have more than MaxFolderRules rules.
	ErrTooManyFolderRules = fmt.Errorf("filter: more than %d folder tracking rules", MaxFolderRules)
)

// FolderRule maps a folder under the Inbox to the record its messages are regarding.
type FolderRule struct {
	// Folder is the folder's path as the provider names it: "INBOX/Contoso" (IMAP
	// with "/" or "." as the delimiter, Graph's display path) and deeper. "INBOX"
	// is compared case-insensitively, the rest exactly.
	Folder      string
	RegardingID string
}

// FolderRules are one user's folder tracking rules: messages in a rule's folder are
// tracked whatever the incoming option, regarding the rule's record, and that record
// wins over a regarding set by hand. It is safe for concurrent use.
type FolderRules struct {
	mu    sync.RWMutex
	rules []FolderRule
}

// NewFolderRules returns rules holding rs, validated as Add does.
func NewFolderRules(rs ...FolderRule) (*FolderRules, error) {
	f := &FolderRules{}
	for _, r := range rs {
		if err := f.Add(r.Folder, r.RegardingID); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Add maps folder to regardingID, replacing the folder's rule if it has one. It
// refuses a folder that is not under the Inbox (ErrFolderNotUnderInbox), an empty
// regardingID, and a 26th rule (ErrTooManyFolderRules); the errors are
// *crmsync.ValidationError.
func (f *FolderRules) Add(folder, regardingID string) error {
	invalid := func(err error) error {
		return &crmsync.ValidationError{What: "folder rule " + folder, Err: err}
	}
	if !underInbox(folder) {
		return invalid(fmt.Errorf("%w: want INBOX/<folder>", ErrFolderNotUnderInbox))
	}
	if strings.TrimSpace(regardingID) == "" {
		return invalid(errors.New("regarding record is empty"))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.rules {
		if sameFolder(r.Folder, folder) {
			f.rules[i].RegardingID = regardingID
			return nil
		}
	}
	if len(f.rules) >= MaxFolderRules {
		return invalid(ErrTooManyFolderRules)
	}
	f.rules = append(f.rules, FolderRule{Folder: folder, RegardingID: regardingID})
	return nil
}

// Remove deletes the folder's rule and reports whether there was one.
func (f *FolderRules) Remove(folder string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.rules {
		if sameFolder(r.Folder, folder) {
			f.rules = append(f.rules[:i], f.rules[i+1:]...)
			return true
		}
	}
	return false
}

// Lookup returns the regarding record of folder's rule.
func (f *FolderRules) Lookup(folder string) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, r := range f.rules {
		if sameFolder(r.Folder, folder) {
			return r.RegardingID, true
		}
	}
	return "", false
}

// Regarding returns the regarding record to keep for a message in folder whose
// regarding was set by hand to manual: the folder's record when the folder has a rule
// (it wins over the manual change), else manual.
func (f *FolderRules) Regarding(folder, manual string) string {
	if r, ok := f.Lookup(folder); ok {
		return r
	}
	return manual
}

// Rules returns a copy of the rules, in the order they were added.
func (f *FolderRules) Rules() []FolderRule {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return append([]FolderRule(nil), f.rules...)
}

// Len returns the number of rules.
func (f *FolderRules) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.rules)
}

// underInbox reports whether folder is "INBOX" + delimiter + a non-empty name.
func underInbox(folder string) bool {
	if len(folder) < 7 || !strings.EqualFold(folder[:5], "inbox") {
		return false
	}
	d := folder[5]
	rest := folder[6:]
	return (d == '/' || d == '.') && strings.TrimSpace(rest) != "" && !strings.ContainsRune(rest, 0)
}

// sameFolder compares folder paths: the "INBOX" head case-insensitively, the rest
// exactly.
func sameFolder(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) >= 5 && strings.EqualFold(a[:5], "inbox") && strings.EqualFold(b[:5], "inbox") &&
		(len(a) == 5 || a[5] == '/' || a[5] == '.') {
		return a[5:] == b[5:]
	}
	return a == b
}
