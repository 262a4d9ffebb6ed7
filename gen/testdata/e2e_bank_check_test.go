// Package check tests the generated code of the bank golden case without a database.
// TestGoldenOutputsCompile copies it to check/check_test.go of a module built from
// testdata/bank/want.
package check

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/jackc/pgx/v5"

	"example.com/app/generated/events"
	"example.com/app/generated/projections/balances"
)

type recorder struct{ got []any }

func (r *recorder) OnAccountOpened(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.AccountOpened) error {
	r.got = append(r.got, e)
	return nil
}

func (r *recorder) OnMoneyDeposited(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.MoneyDeposited) error {
	r.got = append(r.got, e)
	return nil
}

func (r *recorder) OnMoneyWithdrawn(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.MoneyWithdrawn) error {
	r.got = append(r.got, e)
	return nil
}

func (r *recorder) Reset(ctx context.Context, tx pgx.Tx) error { return nil }

func TestEncodeDecode(t *testing.T) {
	d, err := events.Encode(events.MoneyDeposited{Amount: 5})
	if err != nil {
		t.Fatal(err)
	}
	if d.Type != "MoneyDeposited" || d.Version != 1 || string(d.Payload) != `{"amount":5}` {
		t.Errorf("Encode = %+v %s", d, d.Payload)
	}
	note := "n"
	d, _ = events.Encode(events.MoneyDeposited{Amount: 5, Note: &note})
	if string(d.Payload) != `{"amount":5,"note":"n"}` {
		t.Errorf("payload with note = %s", d.Payload)
	}
	if v := (events.MoneyWithdrawn{}).EventVersion(); v != 2 {
		t.Errorf("MoneyWithdrawn version %d", v)
	}
	got, err := events.Decode("AccountOpened", 1, []byte(`{"owner":"ann","currency":"EUR"}`))
	if err != nil || got != (events.AccountOpened{Owner: "ann", Currency: "EUR"}) {
		t.Errorf("Decode = %#v, %v", got, err)
	}
	if _, err := events.Decode("Nope", 1, nil); err == nil || !strings.Contains(err.Error(), "Nope") {
		t.Errorf("Decode of an unknown type: %v", err)
	}
	// MoneyWithdrawn starts at version 2: a version-1 payload is an error, never a
	// zero value.
	if got, err := events.Decode("MoneyWithdrawn", 1, []byte(`{"amount":3}`)); got != nil || err == nil || !strings.Contains(err.Error(), "stored version 1 is not one this code decodes") {
		t.Errorf("Decode of version 1 = %#v, %v", got, err)
	}
}

func TestDispatcher(t *testing.T) {
	r := &recorder{}
	p := balances.New(r)
	if p.Name != "balances" || !p.Partitioned || strings.Join(p.EventTypes, ",") != "AccountOpened,MoneyDeposited,MoneyWithdrawn" {
		t.Errorf("New = %+v", p)
	}
	ctx := context.Background()
	err := p.Handler.Handle(ctx, nil, &eventstore.Event{Type: "MoneyWithdrawn", Version: 2, Payload: json.RawMessage(`{"amount":7}`)})
	if err != nil || len(r.got) != 1 || r.got[0] != (events.MoneyWithdrawn{Amount: 7}) {
		t.Errorf("Handle = %v, got %#v", err, r.got)
	}
	err = p.Handler.Handle(ctx, nil, &eventstore.Event{Type: "LoanGranted", Payload: json.RawMessage("{}")})
	if err == nil || !strings.Contains(err.Error(), "LoanGranted") {
		t.Errorf("Handle of an unknown type: %v", err)
	}
	err = p.Handler.Handle(ctx, nil, &eventstore.Event{Type: "MoneyDeposited", Version: 1, Payload: json.RawMessage(`{"amount":"x"}`)})
	if err == nil || !strings.Contains(err.Error(), "MoneyDeposited") {
		t.Errorf("Handle of a bad payload: %v", err)
	}
}
