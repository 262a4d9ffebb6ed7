package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"

	"github.com/google/uuid"

	"github.com/esgen-dev/esgen/projection"
)

func init() {
	register("skip", "pass a poison event without handling it (--event, --reason; recorded)", runSkip)
}

func runSkip(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("skip", `usage: esgen skip <projection> --event <id> --reason <why> [--by <who>] [--database=URL]

Records that the projection passes one event without handling it: the way past a
poison event that no fix of the handler can handle (the event id is in the log line
of the partition that stopped before it). The partition goes on at its next retry:
a projector with --metrics-addr keeps a stopped partition waiting for this; another
one is started again. Recorded in esgen_skipped_events with who, when and why, and
shown by esgen status; the read model never sees the event.`, stdout)
	db := databaseFlag(fs)
	event := fs.String("event", "", "the id of the event to skip (required)")
	reason := fs.String("reason", "", "why it is skipped, e.g. a ticket (required)")
	by := fs.String("by", defaultOperator(), "who skips it")
	rest, err := fs.parseInterspersed(args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError{errors.New("name exactly one projection: esgen skip <projection> --event <id> --reason <why>")}
	}
	if *event == "" {
		return usageError{errors.New("--event is required: the id of the event to skip")}
	}
	id, err := uuid.Parse(*event)
	if err != nil {
		return usageError{fmt.Errorf("--event %q is not an event id (a UUID)", *event)}
	}
	if strings.TrimSpace(*reason) == "" {
		return usageError{errors.New("--reason is required: say why the event is skipped (it is recorded)")}
	}
	if strings.TrimSpace(*by) == "" {
		return usageError{errors.New("--by is empty: say who skips the event")}
	}
	conn, err := connect(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	s, err := projection.Skip(ctx, conn, projection.SkipRequest{Projection: rest[0], EventID: id, Reason: *reason, By: *by})
	if errors.Is(err, projection.ErrNotFound) {
		return fmt.Errorf("no projection %q", rest[0])
	}
	if errors.Is(err, projection.ErrEventNotFound) {
		return fmt.Errorf("no event %s in the store", id)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "esgen skip: projection %s passes event %s (%s of %s %s, position %s) without handling it; recorded by %s: %s\n",
		s.Projection, s.EventID, s.EventType, s.AggregateType, s.AggregateID, s.Position, s.SkippedBy, s.Reason)
	return nil
}

// defaultOperator names who runs the command: the OS user, at the host.
func defaultOperator() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		if name == "" {
			return host
		}
		return name + "@" + host
	}
	return name
}
