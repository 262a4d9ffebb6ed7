package projection

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestIsTransient(t *testing.T) {
	t.Parallel()
	pg := func(code string) error { return fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: code}) }
	transient := []error{
		pg("08006"), pg("08001"), pg("57P01"), pg("57P02"), pg("57P03"), pg("40001"), pg("40P01"), pg("53300"),
		io.ErrUnexpectedEOF, fmt.Errorf("read: %w", io.EOF), syscall.ECONNREFUSED, syscall.ECONNRESET,
		&net.OpError{Op: "dial", Err: errors.New("connection refused")}, fmt.Errorf("x: %w", net.ErrClosed),
		errors.New("conn closed"),
	}
	for _, err := range transient {
		if !isTransient(err) {
			t.Errorf("%v (%T): not transient", err, err)
		}
	}
	permanent := []error{nil, pg("23505"), pg("42P01"), pg("22P02"), pg("25P02"), errors.New("handler: no such account"), context.Canceled}
	for _, err := range permanent {
		if isTransient(err) {
			t.Errorf("%v: transient", err)
		}
	}
}
