package gen_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/demo/generated/events"
	"github.com/esgen-dev/esgen/internal/demo/generated/projections/balances"
)

// The tests below run code this generator wrote and the module commits (the demo's
// events and balances projection; CI fails when regenerating changes it), without a
// database.

// recorder is a balances.Handler that keeps what it is given.
type recorder struct {
	envs []*eventstore.Event
	evs  []events.Event
	err  error // returned by every method
}

func (r *recorder) keep(env *eventstore.Event, e events.Event) error {
	r.envs = append(r.envs, env)
	r.evs = append(r.evs, e)
	return r.err
}

func (r *recorder) OnAccountOpened(_ context.Context, _ pgx.Tx, env *eventstore.Event, e events.AccountOpened) error {
	return r.keep(env, e)
}

func (r *recorder) OnMoneyDeposited(_ context.Context, _ pgx.Tx, env *eventstore.Event, e events.MoneyDeposited) error {
	return r.keep(env, e)
}

func (r *recorder) OnMoneyWithdrawn(_ context.Context, _ pgx.Tx, env *eventstore.Event, e events.MoneyWithdrawn) error {
	return r.keep(env, e)
}

func (r *recorder) Reset(context.Context, pgx.Tx) error { return r.err }

func TestGeneratedProjection(t *testing.T) {
	r := &recorder{}
	p := balances.New(r)
	wantTypes := []string{events.AccountOpenedType, events.MoneyDepositedType, events.MoneyWithdrawnType}
	if p.Name != "balances" || !p.Partitioned || !slices.Equal(p.EventTypes, wantTypes) {
		t.Errorf("New = %+v", p)
	}
	// Each call builds its own list: changing one projection's does not change another's.
	p.EventTypes[0] = "Changed"
	if again := balances.New(r); again.EventTypes[0] != events.AccountOpenedType {
		t.Errorf("New shares its event types: %v", again.EventTypes)
	}
}

func TestGeneratedDispatcher(t *testing.T) {
	ctx := context.Background()
	id := uuid.MustParse("0190a4c6-47a1-7000-8000-00000000abcd")
	versions := map[string]int32{events.AccountOpenedType: events.AccountOpenedVersion, events.MoneyDepositedType: events.MoneyDepositedVersion,
		events.MoneyWithdrawnType: events.MoneyWithdrawnVersion}
	env := func(typ, payload string) *eventstore.Event {
		return &eventstore.Event{EventID: id, AggregateType: "Account", AggregateID: "acc-7", Type: typ, Version: versions[typ], Payload: json.RawMessage(payload)}
	}

	t.Run("decodes for the method of the type", func(t *testing.T) {
		r := &recorder{}
		h := balances.New(r).Handler
		deposited := env(events.MoneyDepositedType, `{"amount":7,"note":"n"}`)
		withdrawn := env(events.MoneyWithdrawnType, `{"amount":3}`)
		for _, e := range []*eventstore.Event{deposited, withdrawn} {
			if err := h.Handle(ctx, nil, e); err != nil {
				t.Fatal(err)
			}
		}
		if len(r.evs) != 2 || r.envs[0] != deposited || r.envs[1] != withdrawn {
			t.Fatalf("handled %d events, envelopes %v", len(r.evs), r.envs)
		}
		d, ok := r.evs[0].(events.MoneyDeposited)
		if !ok || d.Amount != 7 || d.Note == nil || *d.Note != "n" {
			t.Errorf("OnMoneyDeposited got %#v", r.evs[0])
		}
		if w, ok := r.evs[1].(events.MoneyWithdrawn); !ok || w.Amount != 3 {
			t.Errorf("OnMoneyWithdrawn got %#v", r.evs[1])
		}
	})

	t.Run("returns the handler's error as it is", func(t *testing.T) {
		boom := errors.New("boom")
		err := balances.New(&recorder{err: boom}).Handler.Handle(ctx, nil, env(events.AccountOpenedType, `{"owner":"ann"}`))
		if err != boom {
			t.Errorf("Handle = %v, want the handler's error", err)
		}
	})

	t.Run("a payload that does not decode names the event", func(t *testing.T) {
		r := &recorder{}
		err := balances.New(r).Handler.Handle(ctx, nil, env(events.MoneyDepositedType, `{"amount":"seven"}`))
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			t.Fatalf("Handle = %v, want the json error wrapped", err)
		}
		for _, part := range []string{"balances", events.MoneyDepositedType, id.String(), "Account", "acc-7"} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("error %q does not name %s", err, part)
			}
		}
		if len(r.evs) != 0 {
			t.Errorf("the handler was called with %v", r.evs)
		}
	})

	t.Run("a stored version the code does not know is an error naming the event", func(t *testing.T) {
		r := &recorder{}
		old := env(events.MoneyWithdrawnType, `{"amount":3}`)
		old.Version = 1 // MoneyWithdrawn starts at version 2 in the demo's spec
		err := balances.New(r).Handler.Handle(ctx, nil, old)
		for _, part := range []string{"balances: event " + id.String() + " of Account acc-7", "decode MoneyWithdrawn event: stored version 1 is not one this code decodes (versions 2 to 2)"} {
			if err == nil || !strings.Contains(err.Error(), part) {
				t.Errorf("Handle of version 1 = %v, want it to say %q", err, part)
			}
		}
		if len(r.evs) != 0 {
			t.Errorf("the handler was called with %v", r.evs)
		}
	})

	t.Run("Reset reaches the handlers", func(t *testing.T) {
		boom := errors.New("boom")
		if err := balances.New(&recorder{err: boom}).Reset(ctx, nil); err != boom {
			t.Errorf("Reset = %v", err)
		}
	})

	t.Run("an unexpected type names it", func(t *testing.T) {
		r := &recorder{}
		err := balances.New(r).Handler.Handle(ctx, nil, env("LoanGranted", `{}`))
		if err == nil || !strings.Contains(err.Error(), `"LoanGranted"`) || !strings.Contains(err.Error(), id.String()) {
			t.Errorf("Handle = %v", err)
		}
		if len(r.evs) != 0 {
			t.Errorf("the handler was called with %v", r.evs)
		}
	})
}

func TestGeneratedEncodeDecode(t *testing.T) {
	note := "rent"
	for _, ev := range []events.Event{
		events.AccountOpened{Owner: "ann", Currency: "EUR"},
		events.MoneyDeposited{Amount: 5, Note: &note},
		events.MoneyWithdrawn{Amount: 2},
	} {
		data, err := events.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if data.Type != ev.EventType() || data.Version != ev.EventVersion() {
			t.Errorf("Encode(%#v) = type %s version %d", ev, data.Type, data.Version)
		}
		back, err := events.Decode(data.Type, data.Version, data.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if b, ok := back.(events.MoneyDeposited); ok {
			if b.Note == nil || *b.Note != note || b.Amount != 5 {
				t.Errorf("Decode(Encode(%#v)) = %#v", ev, back)
			}
		} else if back != ev {
			t.Errorf("Decode(Encode(%#v)) = %#v", ev, back)
		}
	}
	if events.MoneyWithdrawnVersion != 2 {
		t.Errorf("MoneyWithdrawnVersion = %d, want the spec's 2", events.MoneyWithdrawnVersion)
	}

	got, err := events.Decode(events.MoneyDepositedType, 1, []byte(`{"amount":"five"}`))
	if got != nil || err == nil || !strings.Contains(err.Error(), events.MoneyDepositedType) {
		t.Errorf("Decode of a bad payload = %#v, %v; want nil and an error naming the type", got, err)
	}
	if got, err := events.Decode("Nope", 1, []byte(`{}`)); got != nil || err == nil || !strings.Contains(err.Error(), `"Nope"`) {
		t.Errorf("Decode of an unknown type = %#v, %v", got, err)
	}
}
