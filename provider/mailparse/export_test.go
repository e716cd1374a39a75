package mailparse

import (
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-message"
)

// MIMEHeaderDisagreement says how readMIMEHeader reads raw's header differently from
// readHeader ("" when it does not): it must fail exactly when readHeader fails, and
// read the same Content-* fields, in order, and nothing else.
func MIMEHeaderDisagreement(raw []byte) string {
	head, _ := splitMessage(raw)
	full, _, ferr := readHeader(head, len(raw))
	mime, merr := readMIMEHeader(head, len(raw))
	if (ferr == nil) != (merr == nil) {
		return fmt.Sprintf("readHeader: %v, readMIMEHeader: %v", ferr, merr)
	}
	if ferr != nil {
		if ferr.Error() != merr.Error() {
			return fmt.Sprintf("readHeader: %v, readMIMEHeader: %v", ferr, merr)
		}
		return ""
	}
	if want, got := fieldList(full, true), fieldList(mime, false); !slices.Equal(want, got) {
		return fmt.Sprintf("Content-* fields %q, read %q", want, got)
	}
	return ""
}

func fieldList(h message.Header, contentOnly bool) []string {
	var out []string
	for f := h.Fields(); f.Next(); {
		if !contentOnly || strings.HasPrefix(strings.ToLower(f.Key()), "content-") {
			out = append(out, f.Key()+": "+f.Value())
		}
	}
	return out
}
