// Command testworker is the projector that the projection package's process tests run
// as real OS processes. Its handler writes one row per event into rm_events (plain
// INSERT keyed by event id, so a second application of an event fails loudly) and
// counts each aggregate's applications in rm_seq, so the tests can check that every
// event was applied once, in version order, by the partition FNV-1a names.
//
// Settings besides those of projector.Main:
//
//	TESTWORKER_PROJECTION  projection name (default "rm")
//	TESTWORKER_ID          recorded with each row (default the process id)
//	TESTWORKER_FAIL_EVENT  event id the handler fails on (a poison event)
//	TESTWORKER_SLEEP       time to sleep per event, e.g. 2ms (to be killed mid-batch)
//	TESTWORKER_PANIC_EVENT event id the handler panics on
//	TESTWORKER_DECODE      with 1, the handler decodes each payload ({"n": int}) as a
//	                       generated dispatcher does, and fails on one that does not
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
	"github.com/esgen-dev/esgen/projector"
)

func main() {
	name := os.Getenv("TESTWORKER_PROJECTION")
	if name == "" {
		name = "rm"
	}
	id := os.Getenv("TESTWORKER_ID")
	if id == "" {
		id = strconv.Itoa(os.Getpid())
	}
	failOn := os.Getenv("TESTWORKER_FAIL_EVENT")
	panicOn := os.Getenv("TESTWORKER_PANIC_EVENT")
	decode := os.Getenv("TESTWORKER_DECODE") == "1"
	var pause time.Duration
	if v := os.Getenv("TESTWORKER_SLEEP"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testworker: TESTWORKER_SLEEP=%s: %v\n", v, err)
			os.Exit(2)
		}
		pause = d
	}
	h := func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
		if failOn != "" && ev.EventID.String() == failOn {
			return errors.New("poison event: the handler refuses it")
		}
		if panicOn != "" && ev.EventID.String() == panicOn {
			var m map[string]int
			m["boom"]++ // assignment to entry in nil map
		}
		if decode {
			var payload struct {
				N int `json:"n"`
			}
			if err := json.Unmarshal(ev.Payload, &payload); err != nil {
				return fmt.Errorf("rm: decode %s event %s: %w", ev.Type, ev.EventID, err)
			}
		}
		if pause > 0 {
			time.Sleep(pause)
		}
		part, _ := projection.CurrentPartition(ctx)
		var seq int64
		err := tx.QueryRow(ctx, `INSERT INTO rm_seq (aggregate_id, n) VALUES ($1, 1)
			ON CONFLICT (aggregate_id) DO UPDATE SET n = rm_seq.n + 1 RETURNING n`, ev.AggregateID).Scan(&seq)
		if err != nil {
			return fmt.Errorf("count %s: %w", ev.AggregateID, err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO rm_events (event_id, aggregate_id, aggregate_version, apply_seq,
			partition_key, total_partitions, generation, global_position, worker)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			ev.EventID, ev.AggregateID, ev.AggregateVersion, seq, part.Key, part.Total, part.Generation,
			ev.Position.GlobalPosition, id)
		if err != nil {
			return fmt.Errorf("insert event %s: %w", ev.EventID, err)
		}
		return nil
	}
	projector.Main(projection.Projection{Name: name, Partitioned: true, Handler: projection.HandlerFunc(h)})
}
