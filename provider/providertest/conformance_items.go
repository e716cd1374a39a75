package providertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// testItems runs the item lifecycle for every kind the provider syncs, and checks that
// the other kinds are refused as not supported.
func (s *suite) testItems(t *testing.T, e *env) {
	is, ok := s.dial(t, e).(provider.ItemSync)
	if !ok {
		t.Fatal("Capabilities.ItemKinds is set but the connection is not a provider.ItemSync")
	}
	for _, k := range []crmsync.ItemKind{crmsync.KindAppointment, crmsync.KindContact, crmsync.KindTask} {
		t.Run(k.String(), func(t *testing.T) {
			if !slices.Contains(s.caps.ItemKinds, k) {
				if _, err := is.Changes(e.ctx, k, nil); !errors.Is(err, crmsync.ErrNotSupported) {
					t.Errorf("Changes of %s, a kind the provider does not sync = %v, want an error wrapping crmsync.ErrNotSupported", k, err)
				}
				return
			}
			s.itemLifecycle(t, e.ctx, is, k)
		})
	}
}

// itemLifecycle creates, updates and deletes an item and checks that Changes reports
// each step after the cursor of the step before.
func (s *suite) itemLifecycle(t *testing.T, ctx context.Context, is provider.ItemSync, k crmsync.ItemKind) {
	_, c0 := changesAll(t, ctx, is, k, nil)
	label := "conformance " + s.messageID()

	created := applyOne(t, ctx, is, k, provider.OpCreate, sampleItem(k, label+" v1"))
	if created.Err != nil || created.ProviderID == "" {
		t.Fatalf("Apply create = ProviderID %q, error %v; want an identity and no error", created.ProviderID, created.Err)
	}
	id := created.ProviderID
	items, c1 := changesAll(t, ctx, is, k, c0)
	if it := findItem(items, id); it == nil || it.Deleted || itemLabel(*it) != label+" v1" {
		t.Errorf("Changes after create: item %s = %+v, want it with label %q", id, it, label+" v1")
	}

	upd := sampleItem(k, label+" v2")
	upd.ProviderID, upd.ChangeKey = id, created.ChangeKey
	if r := applyOne(t, ctx, is, k, provider.OpUpdate, upd); r.Err != nil {
		t.Fatalf("Apply update: %v", r.Err)
	}
	items, c2 := changesAll(t, ctx, is, k, c1)
	if it := findItem(items, id); it == nil || it.Deleted || itemLabel(*it) != label+" v2" {
		t.Errorf("Changes after update: item %s = %+v, want it with label %q", id, it, label+" v2")
	}

	gone := crmsync.Item{Kind: k, ProviderID: id}
	if r := applyOne(t, ctx, is, k, provider.OpDelete, gone); r.Err != nil {
		t.Fatalf("Apply delete: %v", r.Err)
	}
	items, _ = changesAll(t, ctx, is, k, c2)
	if it := findItem(items, id); it == nil || !it.Deleted {
		t.Errorf("Changes after delete: item %s = %+v, want it with Deleted set", id, it)
	}
	live, _ := changesAll(t, ctx, is, k, nil)
	if it := findItem(live, id); it != nil && !it.Deleted {
		t.Errorf("Changes from a nil cursor lists deleted item %s", id)
	}
	r := applyOne(t, ctx, is, k, provider.OpDelete, gone)
	if kind := crmsync.KindOf(r.Err); kind != crmsync.KindNotFound {
		t.Errorf("Apply delete of a deleted item: error %v of kind %s, want kind not found", r.Err, kind)
	}
}

// changesAll reads Changes from cursor until More is false.
func changesAll(t *testing.T, ctx context.Context, is provider.ItemSync, k crmsync.ItemKind, cursor []byte) ([]crmsync.Item, []byte) {
	t.Helper()
	var all []crmsync.Item
	for range 1000 {
		ch, err := is.Changes(ctx, k, cursor)
		if err != nil {
			t.Fatalf("Changes(%s): %v", k, err)
		}
		all = append(all, ch.Items...)
		cursor = ch.Cursor
		if !ch.More {
			return all, cursor
		}
	}
	t.Fatal("Changes kept saying More after 1000 pages")
	return nil, nil
}

func applyOne(t *testing.T, ctx context.Context, is provider.ItemSync, k crmsync.ItemKind, op provider.OpKind, it crmsync.Item) provider.ItemResult {
	t.Helper()
	res, err := is.Apply(ctx, k, []provider.ItemOp{{Op: op, Item: it}})
	if err != nil {
		t.Fatalf("Apply %s %s: %v", op, k, err)
	}
	if len(res) != 1 {
		t.Fatalf("Apply of one op returned %d results", len(res))
	}
	return res[0]
}

// findItem returns the last report of item id in items, or nil.
func findItem(items []crmsync.Item, id string) *crmsync.Item {
	for i := len(items) - 1; i >= 0; i-- {
		if items[i].ProviderID == id {
			return &items[i]
		}
	}
	return nil
}

// sampleItem returns an item of kind k that label identifies.
func sampleItem(k crmsync.ItemKind, label string) crmsync.Item {
	start := time.Now().Add(72 * time.Hour).UTC().Truncate(time.Hour)
	it := crmsync.Item{Kind: k}
	switch k {
	case crmsync.KindAppointment:
		it.Appointment = &crmsync.Appointment{Subject: label, Location: "Room 1", Start: start, End: start.Add(time.Hour)}
	case crmsync.KindContact:
		it.Contact = &crmsync.Contact{FirstName: "Ada", LastName: label, Emails: []string{"ada@conformance.crmsync.test"}}
	case crmsync.KindTask:
		it.Task = &crmsync.Task{Subject: label, Due: start, Priority: 1}
	default:
		panic(fmt.Sprintf("providertest: no sample of item kind %d", k))
	}
	return it
}

// itemLabel returns what sampleItem's label became in it.
func itemLabel(it crmsync.Item) string {
	switch {
	case it.Appointment != nil:
		return it.Appointment.Subject
	case it.Contact != nil:
		return it.Contact.LastName
	case it.Task != nil:
		return it.Task.Subject
	}
	return ""
}
