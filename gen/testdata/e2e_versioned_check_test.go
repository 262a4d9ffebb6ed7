// Package check tests the generated code of the versioned golden case without a
// database: stored payloads of every version decode, through the upcasters, into the
// current event, and versions the code does not know are errors naming the event.
// TestGoldenOutputsCompile copies it to check/check_test.go of a module built from
// testdata/versioned/want.
package check

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/jackc/pgx/v5"

	"example.com/app/generated/events"
	"example.com/app/generated/projections/orders"
)

func TestDecodeUpcastsEveryVersion(t *testing.T) {
	coupon := "SPRING"
	for _, c := range []struct {
		version int32
		payload string
		want    events.OrderPlaced
	}{
		{1, `{"customer_id":"c-1","amount":7}`, events.OrderPlaced{BuyerID: "c-1", Amount: 7, Currency: "EUR"}},
		{2, `{"buyer_id":"c-2","amount":8}`, events.OrderPlaced{BuyerID: "c-2", Amount: 8, Currency: "EUR"}},
		{3, `{"buyer_id":"c-3","amount":9,"currency":"USD","coupon":"SPRING"}`, events.OrderPlaced{BuyerID: "c-3", Amount: 9, Currency: "USD", Coupon: &coupon}},
	} {
		got, err := events.DecodeOrderPlaced(c.version, []byte(c.payload))
		if err != nil {
			t.Fatalf("version %d: %v", c.version, err)
		}
		if got.BuyerID != c.want.BuyerID || got.Amount != c.want.Amount || got.Currency != c.want.Currency ||
			(got.Coupon == nil) != (c.want.Coupon == nil) || got.Coupon != nil && *got.Coupon != *c.want.Coupon {
			t.Errorf("version %d decodes to %+v, want %+v", c.version, got, c.want)
		}
		ev, err := events.Decode(events.OrderPlacedType, c.version, []byte(c.payload))
		if err != nil || ev.(events.OrderPlaced).BuyerID != c.want.BuyerID {
			t.Errorf("Decode version %d = %#v, %v", c.version, ev, err)
		}
	}
}

func TestUnknownVersionsAreErrors(t *testing.T) {
	for _, c := range []struct {
		typ     string
		version int32
		want    string
	}{
		{events.OrderPlacedType, 4, "decode OrderPlaced event: stored version 4 is newer than this code's version 3"},
		{events.OrderPlacedType, 0, "decode OrderPlaced event: stored version 0 is not one this code decodes (versions 1 to 3)"},
		{events.OrderCancelledType, 2, "decode OrderCancelled event: stored version 2 is newer than this code's version 1"},
	} {
		ev, err := events.Decode(c.typ, c.version, []byte(`{}`))
		if ev != nil || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Decode(%s, %d) = %#v, %v; want an error saying %q", c.typ, c.version, ev, err, c.want)
		}
	}
	// An upcaster's error names the step (the stub of OrderShippedV1ToV2 is not written).
	_, err := events.DecodeOrderShipped(1, []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "upcast OrderShipped event from version 1 to 2: upcasters: OrderShippedV1ToV2 not implemented") {
		t.Errorf("DecodeOrderShipped(1) = %v", err)
	}
}

type handlers struct{ placed []events.OrderPlaced }

func (h *handlers) OnOrderPlaced(_ context.Context, _ pgx.Tx, _ *eventstore.Event, e events.OrderPlaced) error {
	h.placed = append(h.placed, e)
	return nil
}
func (h *handlers) OnOrderShipped(context.Context, pgx.Tx, *eventstore.Event, events.OrderShipped) error {
	return nil
}
func (h *handlers) OnOrderCancelled(context.Context, pgx.Tx, *eventstore.Event, events.OrderCancelled) error {
	return nil
}
func (h *handlers) Reset(context.Context, pgx.Tx) error { return nil }

// The dispatcher decodes by the stored version; an unknown one stops it with an
// error naming the event, and the handler is not called with a zero value.
func TestDispatcherDecodesByStoredVersion(t *testing.T) {
	h := &handlers{}
	p := orders.New(h)
	env := &eventstore.Event{AggregateType: "Order", AggregateID: "o-1", AggregateVersion: 1, Type: events.OrderPlacedType, Version: 1,
		Payload: json.RawMessage(`{"customer_id":"c-1","amount":7}`)}
	if err := p.Handler.Handle(context.Background(), nil, env); err != nil {
		t.Fatal(err)
	}
	if len(h.placed) != 1 || h.placed[0].BuyerID != "c-1" || h.placed[0].Currency != "EUR" {
		t.Errorf("the handler got %+v", h.placed)
	}
	env.Version = 9
	err := p.Handler.Handle(context.Background(), nil, env)
	if err == nil || !strings.Contains(err.Error(), "orders: event") || !strings.Contains(err.Error(), "of Order o-1") || !strings.Contains(err.Error(), "stored version 9") {
		t.Errorf("Handle of version 9 = %v", err)
	}
	if len(h.placed) != 1 {
		t.Errorf("the handler was called for version 9: %+v", h.placed)
	}
	if p.Reset == nil || p.Reset(context.Background(), nil) != nil {
		t.Error("New does not pass the handlers' Reset on")
	}
}
