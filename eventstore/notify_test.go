package eventstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

// Appends notify channel esgen_events on commit, unless the connection sets
// esgen.notify = off (here in the connection URL, as an application would).
func TestAppendNotifiesUnlessTurnedOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)

	listener, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN esgen_events"); err != nil {
		t.Fatal(err)
	}
	wait := func(d time.Duration) bool {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		_, err := listener.WaitForNotification(ctx)
		return err == nil
	}

	writer, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(ctx)
	if _, err := eventstore.Append(ctx, writer, "Thing", "a", eventstore.Any, ev("E", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	if !wait(10 * time.Second) {
		t.Fatal("no notification after an append")
	}

	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["esgen.notify"] = "off" // as ?esgen.notify=off in a URL
	quiet, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close(ctx)
	if _, err := eventstore.Append(ctx, quiet, "Thing", "b", eventstore.Any, ev("E", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	// A later notifying append is the marker: if the quiet append had notified, its
	// notification would arrive first and the payloads would not tell them apart, so
	// count: exactly one notification must arrive for the two appends.
	if _, err := eventstore.Append(ctx, writer, "Thing", "c", eventstore.Any, ev("E", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	if !wait(10 * time.Second) {
		t.Fatal("no notification after the marker append")
	}
	if wait(500 * time.Millisecond) {
		t.Fatal("two notifications for one quiet and one notifying append: esgen.notify=off did not silence the first")
	}
}
