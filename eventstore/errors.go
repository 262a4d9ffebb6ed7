package eventstore

import (
	"errors"
	"regexp"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrTablesMissing is matched (with errors.Is) by the errors of a database that esgen's
// migrations were never applied to. Its text says what to do.
var ErrTablesMissing = errors.New("esgen's tables are missing: run esgen migrate (or apply sql/migrations with psql)")

// esgenObject finds one of esgen's tables or functions in PostgreSQL's message, e.g.
// `relation "esgen_events" does not exist` or `function esgen_append(…) does not exist`.
var esgenObject = regexp.MustCompile(`(?:relation|function) "?(?:[a-z0-9_]+\.)?esgen_[a-z0-9_]+`)

// MissingTables returns err unchanged unless PostgreSQL reported one of esgen's own
// tables or functions as missing (SQLSTATE 42P01 undefined_table or 42883
// undefined_function); then it returns an error whose text is that of
// [ErrTablesMissing], which errors.Is matches, and which still unwraps to err. A
// missing table of the module's own (a read model) is left alone. The event store,
// the projection runtime and the esgen commands report a database without esgen's
// tables through it, so the message is the same everywhere.
func MissingTables(err error) error {
	var pgErr *pgconn.PgError
	if err == nil || errors.Is(err, ErrTablesMissing) || !errors.As(err, &pgErr) {
		return err
	}
	if (pgErr.Code != "42P01" && pgErr.Code != "42883") || !esgenObject.MatchString(pgErr.Message) {
		return err
	}
	return &tablesMissingError{err: err}
}

type tablesMissingError struct{ err error }

func (e *tablesMissingError) Error() string   { return ErrTablesMissing.Error() }
func (e *tablesMissingError) Unwrap() []error { return []error{ErrTablesMissing, e.err} }
