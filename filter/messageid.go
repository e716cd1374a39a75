package filter

import (
	"crypto/rand"
	"encoding/base32"
	"strconv"
	"strings"
	"time"
)

// messageIDEncoding is lower-case base32 without padding: case-insensitive systems that
// fold a Message-ID (some do, wrongly) cannot make two of them equal.
var messageIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewMessageID returns a Message-ID (without angle brackets) for an outgoing CRM email,
// of the form
//
//	crm.<milliseconds since 1970, base 36>.<128 random bits, base32>@<domain>
//
// for example "crm.mbq3k2x1.4f5q…@example.com". The random part makes it globally
// unique without coordination between engines; the time part keeps it unique even
// with a broken random source and orders IDs by creation. domain should be the
// sender's domain; an empty or unusable one becomes "crmsync.invalid".
func NewMessageID(domain string) string {
	var r [16]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails
	return "crm." + strconv.FormatInt(time.Now().UnixMilli(), 36) + "." +
		messageIDEncoding.EncodeToString(r[:]) + "@" + messageIDDomain(domain)
}

// messageIDDomain keeps a domain that is a valid dot-atom of letters, digits, '-' and
// '.', lower-cased.
func messageIDDomain(d string) string {
	d = strings.ToLower(strings.Trim(strings.TrimSpace(d), "."))
	if d == "" || len(d) > 253 || strings.Contains(d, "..") {
		return "crmsync.invalid"
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return "crmsync.invalid"
		}
	}
	return d
}

// DomainOf returns the domain of an email address, or "" when it has none.
func DomainOf(address string) string {
	if i := strings.LastIndexByte(address, '@'); i >= 0 {
		return address[i+1:]
	}
	return ""
}
