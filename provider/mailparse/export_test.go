package mailparse

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// referenceHeader reads a header block with go-message's textproto.ReadHeader, as
// readHeader did before it read blocks in place: the reference the fuzz targets hold
// readHeader and readMIMEHeader to.
func referenceHeader(head []byte, size int) (message.Header, []string, error) {
	if size == 0 {
		return message.Header{}, nil, &ParseError{Reason: ReasonEmpty}
	}
	head = stripMboxFrom(head)
	h, err := referenceBlock(head)
	var notes []string
	if err != nil {
		clean, dropped := sanitizeHeader(head)
		if h, err = referenceBlock(clean); err != nil {
			return message.Header{}, nil, &ParseError{Reason: ReasonUnreadableHeader, Err: err}
		}
		if dropped > 0 {
			notes = append(notes, fmt.Sprintf("%d malformed header line(s) were ignored", dropped))
		}
	}
	if h.Len() == 0 {
		return message.Header{}, nil, &ParseError{Reason: ReasonNoHeader}
	}
	return h, notes, nil
}

func referenceBlock(head []byte) (message.Header, error) {
	end := "\r\n" // the empty line that ends the block
	if len(head) > 0 && head[len(head)-1] != '\n' {
		end = "\r\n\r\n"
	}
	h, err := textproto.ReadHeader(bufio.NewReader(io.MultiReader(bytes.NewReader(head), strings.NewReader(end))))
	return message.Header{Header: h}, err
}

// lookedUp are the fields headerEmail looks up.
var lookedUp = []string{"Message-Id", "In-Reply-To", "References", "Thread-Index", "From", "Sender",
	"To", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Received"}

// HeaderDisagreement says how readHeader reads raw's header differently from
// go-message's reader ("" when it does not): it must fail with the same reason, make
// the same notes, count the same fields, and give the same values for the fields
// headerEmail looks up and for every field name in the header that is a token.
func HeaderDisagreement(raw []byte) string {
	head, _ := splitMessage(raw)
	want, wantNotes, werr := referenceHeader(head, len(raw))
	got, gotNotes, gerr := readHeader(head, len(raw), nil)
	if d := errorDisagreement(werr, gerr); d != "" || werr != nil {
		return d
	}
	if !slices.Equal(wantNotes, gotNotes) {
		return fmt.Sprintf("notes %q, read %q", wantNotes, gotNotes)
	}
	if want.Len() != len(got) {
		return fmt.Sprintf("%d fields, read %d", want.Len(), len(got))
	}
	keys := slices.Clone(lookedUp)
	for f := want.Fields(); f.Next(); {
		if isToken(f.Key()) {
			keys = append(keys, f.Key())
		}
	}
	for _, k := range keys {
		if w, g := want.Values(k), got.Values(k); !slices.Equal(w, g) {
			return fmt.Sprintf("%s: %q, read %q", k, w, g)
		}
		if w, g := want.Get(k), got.Get(k); w != g {
			return fmt.Sprintf("%s: first %q, read %q", k, w, g)
		}
	}
	return ""
}

func isToken(s string) bool {
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

// MIMEHeaderDisagreement says how readMIMEHeader reads raw's header differently from
// go-message's reader ("" when it does not): it must fail exactly when that reader
// fails, and read the same Content-* fields, in order, and nothing else.
func MIMEHeaderDisagreement(raw []byte) string {
	head, _ := splitMessage(raw)
	full, _, ferr := referenceHeader(head, len(raw))
	mime, merr := readMIMEHeader(head, len(raw))
	if d := errorDisagreement(ferr, merr); d != "" || ferr != nil {
		return d
	}
	if want, got := fieldList(full, true), fieldList(mime, false); !slices.Equal(want, got) {
		return fmt.Sprintf("Content-* fields %q, read %q", want, got)
	}
	return ""
}

// errorDisagreement compares the errors of the reference and of the reader under test:
// both nil, or *ParseErrors with the same reason.
func errorDisagreement(want, got error) string {
	if (want == nil) != (got == nil) {
		return fmt.Sprintf("reference: %v, read: %v", want, got)
	}
	if want != nil && want.(*ParseError).Reason != got.(*ParseError).Reason {
		return fmt.Sprintf("reference: %v, read: %v", want, got)
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

// Base64Disagreement says how decodeBase64 decodes src differently from base64's
// decoder over the whole body without its spaces and tabs ("" when it does not).
func Base64Disagreement(src []byte) string {
	got, ok := decodeBase64(src)
	clean := bytes.Map(func(r rune) rune {
		if r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, src)
	want, err := base64.StdEncoding.DecodeString(string(clean))
	if ok != (err == nil) {
		return fmt.Sprintf("decodeBase64 ok %v, base64: %v", ok, err)
	}
	if ok && !bytes.Equal(want, got) {
		return fmt.Sprintf("decoded %q, base64 %q", got, want)
	}
	return ""
}

// MessageIDDisagreement says how NormalizeMessageID and SplitMessageIDs read v
// differently from their slow paths ("" when they do not).
func MessageIDDisagreement(v string) string {
	if w := strings.TrimSpace(v); w != "" {
		if got, want := NormalizeMessageID(v), normalizeMessageID(w); got != want {
			return fmt.Sprintf("NormalizeMessageID %q, the slow way %q", got, want)
		}
		if got, want := SplitMessageIDs(v), splitMessageIDs(v); !slices.Equal(got, want) {
			return fmt.Sprintf("SplitMessageIDs %q, the slow way %q", got, want)
		}
	}
	return ""
}

// AddressDisagreement says how ParseAddressList reads v differently from its slow path
// ("" when it does not).
func AddressDisagreement(v string) string {
	got, gotNotes := ParseAddressList(v)
	if w := from8bit(v); strings.TrimSpace(w) != "" {
		want, wantNotes := parseAddressList(w)
		if !slices.Equal(got, want) || !slices.Equal(gotNotes, wantNotes) {
			return fmt.Sprintf("ParseAddressList %q %q, the slow way %q %q", got, gotNotes, want, wantNotes)
		}
	}
	return ""
}
