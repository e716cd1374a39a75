package mailparse

import (
	"io"
	"mime"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// wordDecoder decodes RFC 2047 encoded words in every charset go-message knows. It is
// never modified.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// encodedWord matches one RFC 2047 encoded word.
var encodedWord = regexp.MustCompile(`=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=`)

// DecodeText decodes the RFC 2047 encoded words of an unstructured header value (a
// Subject, a display name, a file name) and trims it. An encoded word that cannot be
// decoded (an unknown charset, bad base64) is kept as it is, and the others are still
// decoded. Raw 8-bit text that is not UTF-8 is read as Windows-1252, as mail clients
// do. The result is valid UTF-8.
func DecodeText(v string) string {
	v = from8bit(strings.TrimSpace(v))
	if !strings.Contains(v, "=?") {
		return validUTF8(v)
	}
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		return validUTF8(d)
	}
	return validUTF8(decodeWords(v))
}

// decodeWords decodes the encoded words of v one by one, keeping those that fail.
// White space between two decoded words goes, as RFC 2047 says.
func decodeWords(v string) string {
	var b strings.Builder
	last, prevDecoded := 0, false
	for _, m := range encodedWord.FindAllStringIndex(v, -1) {
		gap := v[last:m[0]]
		d, err := wordDecoder.Decode(v[m[0]:m[1]])
		decoded := err == nil
		if !(decoded && prevDecoded && strings.TrimSpace(gap) == "") {
			b.WriteString(gap)
		}
		if decoded {
			b.WriteString(d)
		} else {
			b.WriteString(v[m[0]:m[1]])
		}
		last, prevDecoded = m[1], decoded
	}
	b.WriteString(v[last:])
	return b.String()
}

// from8bit returns s, read as Windows-1252 when it is not valid UTF-8: raw 8-bit text in
// a header or a body that declares no charset is most often that.
func from8bit(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	r, err := charset.Reader("windows-1252", strings.NewReader(s))
	if err != nil {
		return s
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return s
	}
	return string(b)
}

// validUTF8 returns s with invalid bytes replaced by U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
