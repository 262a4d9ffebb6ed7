package eventstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

// On a database without esgen's tables, appends say how to create them, and still
// carry PostgreSQL's error.
func TestAppendWithoutTablesSaysRunMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.NewEmptyDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	_, err = eventstore.Append(ctx, conn, "Account", "a-1", eventstore.Any, eventstore.EventData{Type: "Opened", Payload: []byte(`{}`)})
	want := "esgen's tables are missing: run esgen migrate (or apply sql/migrations with psql)"
	if !errors.Is(err, eventstore.ErrTablesMissing) || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("append: %v", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Errorf("append: %v does not unwrap to PostgreSQL's error", err)
	}
	if _, err := eventstore.AggregateVersion(ctx, conn, "Account", "a-1"); !errors.Is(err, eventstore.ErrTablesMissing) || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("aggregate version: %v", err)
	}

	// A missing table of the module's own is not esgen's to explain.
	_, err = conn.Exec(ctx, `SELECT * FROM balances`)
	if got := eventstore.MissingTables(err); got != err || errors.Is(got, eventstore.ErrTablesMissing) {
		t.Errorf("MissingTables(%v) = %v, want it unchanged", err, got)
	}
	if eventstore.MissingTables(nil) != nil {
		t.Error("MissingTables(nil) is not nil")
	}
	other := errors.New("connection refused")
	if eventstore.MissingTables(other) != other {
		t.Error("MissingTables changed an error that is not PostgreSQL's")
	}
}
