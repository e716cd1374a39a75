package storetest_test

import (
	"strings"
	"testing"

	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/memstore"
	"github.com/crmsync/crmsync/crmstore/storetest"
)

// TestOptionalLookupsSkipped runs the suite on a store without the optional correlation
// lookups (memstore seen through crmstore.Store, which hides them): it passes, and the
// lookup tests, and only they, are skipped.
func TestOptionalLookupsSkipped(t *testing.T) {
	lookups := map[string]bool{
		"CorrelationKeys/EmailsByTrackingToken":  true,
		"CorrelationKeys/EmailsByConversationID": true,
		"CorrelationKeys/EmailsBySubjectHash":    true,
	}
	ran := 0
	storetest.Run(t, func(st *testing.T) crmstore.Store {
		st.Cleanup(func() {
			ran++
			name := strings.TrimPrefix(st.Name(), t.Name()+"/")
			if st.Skipped() != lookups[name] {
				t.Errorf("%s: skipped %v, want %v", name, st.Skipped(), lookups[name])
			}
		})
		return struct{ crmstore.Store }{memstore.New()}
	})
	if ran == 0 {
		t.Error("no test of the suite ran")
	}
}
