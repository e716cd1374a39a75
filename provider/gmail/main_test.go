package gmail_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every connection, bridge session and test server must be gone when the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
