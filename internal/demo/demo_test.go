package demo_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/internal/demo"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestDemoVerifiesEveryEventOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	// Against a server shared with other tests: the demo works in its own schema.
	url := pgtest.NewEmptyDatabase(t)
	var out bytes.Buffer
	report, err := demo.Run(context.Background(), demo.Options{
		DatabaseURL: url,
		Partitions:  3,
		Accounts:    60,
		Events:      900,
		Writers:     4,
		Stdout:      &out,
		Stderr:      &out,
	})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if !report.OK() || report.Handled != 900 || report.Accounts != 60 {
		t.Fatalf("report = %+v\n%s", report, out.String())
	}
	sum := 0
	for k, n := range report.PerPartition {
		if n == 0 {
			t.Errorf("partition %d handled nothing", k)
		}
		sum += n
	}
	if sum != 900 {
		t.Fatalf("per-partition counts %v add up to %d", report.PerPartition, sum)
	}
	// The workers are the generated projector, built by the demo, whose handlers got
	// their partition through NewHandlers.
	for _, want := range []string{"building the projector", "[worker 0]", "[worker 2]", `msg="demo handlers ready" projection=balances partition=2`,
		"partition started", "verification", "workers: 3 of 3 stopped cleanly"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
