package gmail

import (
	"encoding/json"
	"strings"

	"github.com/emersion/go-sasl"
)

// SASL mechanism names.
const (
	// XOAUTH2 is Google's mechanism for OAuth 2.0 access tokens over IMAP, POP and SMTP
	// (https://developers.google.com/workspace/gmail/imap/xoauth2-protocol).
	XOAUTH2 = "XOAUTH2"
	// OAUTHBEARER is the standard one (RFC 7628), which Gmail offers too.
	OAUTHBEARER = sasl.OAuthBearer
)

// DefaultMechanisms is the order of preference when Config.Mechanisms is empty: XOAUTH2, the mechanism
// Google documents for IMAP and SMTP, then OAUTHBEARER where a server offers only that.
func DefaultMechanisms() []string { return []string{XOAUTH2, OAUTHBEARER} }

// xoauth2Client is the client side of XOAUTH2: the initial response carries the user and the token; an
// error comes as a challenge (a JSON object), to which the client answers with an empty response before the
// server's final refusal.
type xoauth2Client struct {
	user, token string
	failure     *sasl.OAuthBearerError // the server's error challenge, once received
}

// NewXOAUTH2Client returns a go-sasl client for XOAUTH2 with user (the Gmail address) and an OAuth 2.0
// access token. Next answers the server's error challenge with the empty response the mechanism expects.
func NewXOAUTH2Client(user, accessToken string) sasl.Client {
	return &xoauth2Client{user: user, token: accessToken}
}

// Start returns the initial response: the user and the Bearer token.
func (c *xoauth2Client) Start() (string, []byte, error) {
	return XOAUTH2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

// Next keeps the server's error challenge and answers it with the empty response XOAUTH2 expects.
func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	var e sasl.OAuthBearerError
	if json.Unmarshal(challenge, &e) == nil {
		c.failure = &e
	}
	return []byte{}, nil
}

// saslClient returns the client of mechanism mech for user and token, host and port (for OAUTHBEARER).
func saslClient(mech, user, token, host string, port int) sasl.Client {
	if mech == OAUTHBEARER {
		return sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: user, Token: token, Host: host, Port: port})
	}
	return NewXOAUTH2Client(user, token)
}

// abortResponse is what a client sends after an error challenge: XOAUTH2 wants an empty response, OAUTHBEARER
// the single byte 0x01 (RFC 7628, 3.2.3).
func abortResponse(mech string) []byte {
	if mech == OAUTHBEARER {
		return []byte{0x01}
	}
	return []byte{}
}

// chooseMechanism returns the first of prefs that offered accepts, or "".
func chooseMechanism(prefs []string, offered func(mech string) bool) string {
	for _, m := range prefs {
		if offered(strings.ToUpper(m)) {
			return strings.ToUpper(m)
		}
	}
	return ""
}
