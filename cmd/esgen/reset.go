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
	register("reset", "delete a projection's checkpoints, so that its next start rebuilds it (--yes to confirm)", runReset)
}

func runReset(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reset", `usage: esgen reset <projection> --yes [--database=URL]

Deletes the projection's checkpoints and partition layout, so that its next start
handles every event again. Stop its workers first and clear its read model (see
docs/projections.md); esgen does not know the read model's tables. Events skipped
on purpose (esgen skip) stay skipped.`, stdout)
	db := databaseFlag(fs)
	yes := fs.Bool("yes", false, "confirm: delete the checkpoints")
	// The projection name may come before or after the flags.
	names, err := fs.parseInterspersed(args)
	if err != nil {
		return err
	}
	if len(names) != 1 {
		return usageError{errors.New("name exactly one projection: esgen reset <projection> --yes")}
	}
	name := names[0]
	if !*yes {
		return usageError{fmt.Errorf("refusing without --yes: this deletes the checkpoints of projection %s, and its next start handles every event again. Stop its workers, clear its read model, then run: esgen reset %s --yes", name, name)}
	}
	conn, err := connect(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := projection.Reset(ctx, conn, name); err != nil {
		if errors.Is(err, projection.ErrNotFound) {
			return fmt.Errorf("no projection %q: nothing to reset", name)
		}
		return eventstore.MissingTables(err)
	}
	fmt.Fprintf(stdout, "esgen reset: deleted the checkpoints of projection %s; clear its read model (if not done yet), then start its workers to rebuild it\n", name)
	return nil
}
