package projection_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/projection"
)

// BenchmarkNotifyLatency measures, on an idle system, the time from an append's
// commit to its event reaching the handler: with LISTEN/NOTIFY, and with polling only
// (every 100 ms, so the expected latency is about half that). It reports the median and
// the 99th percentile. Run it alone, e.g.:
//
//	go test -run '^$' -bench NotifyLatency -benchtime 200x ./projection/
func BenchmarkNotifyLatency(b *testing.B) {
	for _, mode := range []struct {
		name string
		cfg  projection.Config
	}{
		{"notify", projection.Config{}},
		{"polling-100ms", projection.Config{DisableNotify: true, PollInterval: 100 * time.Millisecond}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			url := pgtest.NewDatabase(b)
			pool := newPool(b, url)
			handled := make(chan uuid.UUID, 1)
			h := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
				handled <- ev.EventID
				return nil
			})
			cfg := mode.cfg
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			r := start(b, pool, projection.Projection{Name: "latency", Handler: h}, cfg)
			ctx := context.Background()
			// Warm up: the runner is started and idle.
			if _, err := eventstore.Append(ctx, pool, "Bench", "warm-up", eventstore.Any, eventstore.EventData{Type: "Ping", Payload: []byte(`{}`)}); err != nil {
				b.Fatal(err)
			}
			<-handled
			time.Sleep(50 * time.Millisecond)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				id := uuid.New()
				t0 := time.Now()
				if _, err := eventstore.Append(ctx, pool, "Bench", fmt.Sprint("a-", i), eventstore.NoStream,
					eventstore.EventData{ID: id, Type: "Ping", Payload: []byte(`{}`)}); err != nil {
					b.Fatal(err)
				}
				got := <-handled
				lat = append(lat, time.Since(t0))
				if got != id {
					b.Fatalf("handled %s, appended %s", got, id)
				}
				// Let the runner go idle again (a random phase against the poll timer).
				b.StopTimer()
				if cfg.DisableNotify {
					time.Sleep(time.Duration(i%10) * cfg.PollInterval / 10)
				} else {
					time.Sleep(time.Duration(i%7) * 3 * time.Millisecond)
				}
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[(len(lat)*99)/100]), "p99-ms")
			b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
			if err := r.stop(b); err != nil {
				b.Fatal(err)
			}
		})
	}
}
