// Package migrate applies esgen's schema to a PostgreSQL database.
//
// The migrations are the numbered files under sql/migrations of the esgen module,
// embedded in the binary. Pending ones are applied in one transaction, each with its
// row in esgen_schema_migrations, under an advisory lock so concurrent migrators wait
// for each other: a failure leaves the database as it was. The files are also valid input for psql -f and can be applied more than
// once, so a database migrated by hand and one migrated here end in the same state.
//
// It knows files, versions and the version table: it must not know what the schema
// holds (events, checkpoints) nor how the runtime uses it.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/esgen-dev/esgen"
)

// Migration is one numbered SQL file.
type Migration struct {
	Version int    // from the file name: 001_event_store.sql is version 1
	Name    string // the file name
	SQL     string
}

// Conn is what Up needs of a connection: *pgx.Conn and *pgxpool.Pool both have it.
type Conn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

var fileName = regexp.MustCompile(`^(\d+)_[a-z0-9_]+\.sql$`)

// Load reads the migrations in the root of fsys, checking that their versions run
// 1, 2, 3 … without gaps or duplicates.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("migrate: read %s: %w", dir, err)
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migrate: %s: file name must look like 001_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("migrate: read %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: e.Name(), SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrate: %s: expected version %d (versions must start at 1 without gaps or duplicates)", m.Name, i+1)
		}
	}
	return out, nil
}

// All returns esgen's own migrations.
func All() []Migration {
	ms, err := Load(esgen.Migrations, "sql/migrations")
	if err != nil {
		panic(err) // the embedded files are checked by the tests
	}
	return ms
}

const versionTable = `CREATE TABLE IF NOT EXISTS esgen_schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`

// lockKey serializes concurrent migrators of one database.
const lockKey = 0x65736765_6e6d6967 // "esgenmig"

// Applied returns the versions recorded in esgen_schema_migrations (none when the
// table does not exist yet).
func Applied(ctx context.Context, conn Conn) (map[int]bool, error) {
	rows, err := conn.Query(ctx, `SELECT version FROM esgen_schema_migrations`)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
			return map[int]bool{}, nil
		}
		return nil, fmt.Errorf("migrate: read applied versions: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
			return map[int]bool{}, nil
		}
		return nil, fmt.Errorf("migrate: read applied versions: %w", err)
	}
	out := make(map[int]bool, len(versions))
	for _, v := range versions {
		out[int(v)] = true
	}
	return out, nil
}

// Up applies the migrations that are not recorded yet, in order, and returns them.
func Up(ctx context.Context, conn Conn, migrations []Migration) ([]Migration, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockKey)); err != nil {
		return nil, fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, versionTable); err != nil {
		return nil, fmt.Errorf("migrate: create esgen_schema_migrations: %w", err)
	}
	applied, err := Applied(ctx, tx)
	if err != nil {
		return nil, err
	}
	var done []Migration
	for _, m := range migrations {
		if applied[m.Version] {
			continue
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("migrate: apply %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO esgen_schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			return nil, fmt.Errorf("migrate: record %s: %w", m.Name, err)
		}
		done = append(done, m)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("migrate: commit: %w", err)
	}
	return done, nil
}
