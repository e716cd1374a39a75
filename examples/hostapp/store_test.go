package main

import (
	"context"
	"testing"

	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/crmstore/storetest"
)

// The host proves its Store keeps every promise the engine relies on, in one call.
func TestHostStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) crmstore.Store { return NewHostStore() })
}

func TestHostAppRuns(t *testing.T) {
	if err := run(context.Background()); err != nil {
		t.Fatal(err)
	}
}
