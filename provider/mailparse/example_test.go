package mailparse_test

import (
	"errors"
	"fmt"

	"github.com/crmsync/crmsync/provider/mailparse"
)

// Parse a whole message: damage becomes notes, never an error.
func ExampleParse() {
	raw := []byte("From: Ann Smith ann@example.test\r\n" +
		"To: =?UTF-8?Q?Bj=C3=B6rn?= <bjorn@example.test>\r\n" +
		"Subject: =?ISO-8859-1?Q?Caf=E9?=\r\n" +
		"Message-ID: <q1@example.test>\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n" +
		"\r\n" +
		"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nCr\xe8me\r\n" +
		"--b\r\nContent-Type: application/pdf; name=\"quote.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n" +
		"--b--\r\n")
	e, err := mailparse.Parse(raw, mailparse.Options{AttachmentLimit: 5 << 20})
	if err != nil {
		var pe *mailparse.ParseError
		if errors.As(err, &pe) {
			fmt.Println("not a message:", pe.Reason)
		}
		return
	}
	fmt.Println(e.MessageID, e.Subject)
	fmt.Println(e.From, "→", e.To[0])
	fmt.Printf("%q\n", e.TextBody)
	fmt.Println(e.Attachments[0].Name, e.Attachments[0].Size)
	fmt.Println(e.Notes)
	// Output:
	// q1@example.test Café
	// "Ann Smith" <ann@example.test> → "Björn" <bjorn@example.test>
	// "Crème"
	// quote.pdf 8
	// [From: "Ann Smith ann@example.test" is not a valid address; read as ann@example.test]
}

// Read headers first, and the body only of a message worth tracking, as the providers
// do.
func ExampleParseBody() {
	raw := []byte("From: bob@example.test\r\nSubject: quote\r\n\r\nHere it is.\r\n")
	e, err := mailparse.ParseHeader(raw) // from IMAP BODY[HEADER] or POP3 TOP n 0
	if err != nil {
		return
	}
	if e.From.Email == "bob@example.test" {
		if err := mailparse.ParseBody(e, raw, mailparse.Options{}); err != nil {
			return
		}
	}
	fmt.Printf("%s: %q\n", e.Subject, e.TextBody)
	// Output:
	// quote: "Here it is.\r\n"
}
