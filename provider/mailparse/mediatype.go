package mailparse

import (
	"io"
	"mime"
	"net/url"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
)

// contentType reads a Content-Type leniently: a type with broken parameters keeps the
// parameters that can be read (go-message would drop them all, and with them a
// multipart's boundary). No Content-Type means text/plain (RFC 2045); an unreadable one
// application/octet-stream.
func contentType(h message.Header) (string, map[string]string) {
	v := h.Get("Content-Type")
	if strings.TrimSpace(v) == "" {
		return "text/plain", map[string]string{}
	}
	t, params, err := mime.ParseMediaType(v)
	if err != nil {
		if t, params = lenientMediaType(v); t == "" {
			return "application/octet-stream", map[string]string{}
		}
	}
	return strings.ToLower(t), params
}

// lenientMediaType reads "type/subtype; k=v; k=v" without failing on bad parameters;
// the first value of a repeated parameter wins. It returns "" for an unreadable type.
func lenientMediaType(v string) (string, map[string]string) {
	parts := strings.Split(v, ";")
	t := strings.ToLower(strings.TrimSpace(parts[0]))
	if !strings.Contains(t, "/") || strings.ContainsAny(t, " \t\"") {
		return "", nil
	}
	params := make(map[string]string)
	for _, p := range parts[1:] {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if _, dup := params[k]; !dup && k != "" {
			params[k] = strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	return t, params
}

// disposition returns a part's Content-Disposition type in lower case ("" when it has
// none) and its parameters, read as leniently as contentType reads its own.
func disposition(h message.Header) (string, map[string]string) {
	v := h.Get("Content-Disposition")
	if strings.TrimSpace(v) == "" {
		return "", map[string]string{}
	}
	d, params, err := mime.ParseMediaType(v)
	if err != nil {
		var rest string
		d, rest, _ = strings.Cut(v, ";")
		_, params = lenientMediaType("x/x;" + rest)
	}
	return strings.ToLower(strings.TrimSpace(d)), params
}

// fileName returns a part's decoded file name: Content-Disposition's filename, else
// Content-Type's name, with RFC 2231 values in any charset go-message knows, and RFC
// 2047 encoded words (which many mailers use there) decoded.
func fileName(h message.Header, params, dparams map[string]string) string {
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	if name == "" {
		// mime.ParseMediaType drops RFC 2231 values in charsets other than UTF-8.
		name = rfc2231Param(h.Get("Content-Disposition"), "filename")
	}
	if name == "" {
		name = rfc2231Param(h.Get("Content-Type"), "name")
	}
	return DecodeText(name)
}

// rfc2231Param decodes a "key*=charset'lang'value" parameter, or returns "".
func rfc2231Param(v, key string) string {
	_, rest, ok := strings.Cut(v, ";")
	if !ok {
		return ""
	}
	_, params := lenientMediaType("x/x;" + rest)
	enc, ok := params[key+"*"]
	if !ok {
		return ""
	}
	cs, rest, ok := strings.Cut(enc, "'")
	if !ok {
		return ""
	}
	_, value, ok := strings.Cut(rest, "'")
	if !ok {
		return ""
	}
	raw, err := url.PathUnescape(value)
	if err != nil {
		return ""
	}
	r, err := charset.Reader(strings.ToLower(cs), strings.NewReader(raw))
	if err != nil {
		return ""
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return ""
	}
	return string(b)
}

// transferEncoding maps the Content-Transfer-Encoding values seen in the wild ("7-bit",
// "8bits", "quoted printable", "base64;", "plain", a content type…) to the ones
// go-message decodes. Unknown encodings (uuencode, x-…) are kept, so that the part is
// read raw with a note.
func transferEncoding(v string) string {
	v = strings.ToLower(strings.Trim(strings.TrimSpace(v), ";\"' "))
	switch {
	case v == "", v == "7bit", v == "8bit", v == "binary":
		return v
	case strings.Contains(v, "base64"):
		return "base64"
	case strings.Contains(v, "quoted"):
		return "quoted-printable"
	case strings.Contains(v, "uu"), strings.HasPrefix(v, "x-"):
		return v
	}
	return "8bit" // "7-bit", "8bits", "plain", a content type…: not encoded
}

// setContentType writes a repaired Content-Type; parameters that cannot be written
// again are dropped, all but the charset first, then the charset too.
func setContentType(h *message.Header, t string, params map[string]string) {
	if mime.FormatMediaType(t, params) != "" {
		h.SetContentType(t, params)
		return
	}
	if cs := params["charset"]; cs != "" && mime.FormatMediaType(t, map[string]string{"charset": cs}) != "" {
		h.SetContentType(t, map[string]string{"charset": cs})
		return
	}
	if mime.FormatMediaType(t, nil) != "" {
		h.Set("Content-Type", t)
		return
	}
	h.Set("Content-Type", "application/octet-stream")
}
