package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
)

func init() {
	register("accept-skip", "let a projection handle new event types without their earlier events", runAcceptSkip)
}

func runAcceptSkip(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("accept-skip", `usage: esgen accept-skip <projection> <EventType>... [--database=URL]

A projector that starts handling an event type with events at or before its
checkpoints refuses to start. This command decides to skip them: the projection
handles the type's new events only, and never those. The skip is recorded, with how
many events it concerns, and esgen status shows it as event types skipped on purpose.
(The other choice: esgen rebuild. To pass a single poison event: esgen skip.)`, stdout)
	db := databaseFlag(fs)
	names, err := fs.parseInterspersed(args)
	if err != nil {
		return err
	}
	if len(names) < 2 {
		return usageError{errors.New("name a projection and at least one event type: esgen accept-skip <projection> <EventType>...")}
	}
	name, types := names[0], names[1:]
	conn, err := connect(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	counts, err := projection.AcceptSkip(ctx, conn, name, types)
	if errors.Is(err, projection.ErrNotFound) {
		return fmt.Errorf("no projection %q: a projection that never ran handles every event of its types", name)
	}
	if err != nil {
		return eventstore.MissingTables(err)
	}
	for _, c := range counts {
		fmt.Fprintf(stdout, "esgen accept-skip: projection %s handles %s from now on and never the %d earlier event(s) at or before its checkpoints; recorded (esgen status shows it)\n",
			name, c.Type, c.Events)
	}
	fmt.Fprintf(stdout, "esgen accept-skip: start the projector of %s\n", name)
	return nil
}
