package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/internal/pgtest"
)

// benchReport is the part of `esgen bench --json` the tests read.
type benchReport struct {
	Results []struct {
		Group        string  `json:"group"`
		Name         string  `json:"name"`
		Events       int64   `json:"events"`
		EventsPerSec float64 `json:"events_per_sec"`
	} `json:"results"`
}

func TestBenchCommandAppendJSON(t *testing.T) {
	srv := pgtest.Shared(t)
	code, out, errOut := runArgs("bench", "--quick", "--only", "append", "--append-events", "1000", "--json", "-q", "--database", srv.URL)
	if code != 0 {
		t.Fatalf("code %d\n%s", code, errOut)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if len(rep.Results) != 18 {
		t.Fatalf("%d results, want 18 append rows", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Group != "append" || r.Events <= 0 || r.EventsPerSec <= 0 {
			t.Errorf("result %+v", r)
		}
	}
}

// The built binary starts itself again as the worker processes of the catch-up group.
func TestBenchCommandCatchUpWithWorkerProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a catch-up benchmark")
	}
	srv := pgtest.Shared(t)
	cmd := exec.Command(esgenBinary(t), "bench", "--quick", "--only", "catch-up", "--events", "5000", "--database", srv.URL)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("esgen bench: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{"raw streaming SELECT", "no-op handler, 4 processes", "scanned/returned"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestBenchCommandRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--only", "nothing"},
		{"bench", "--events", "10"},
		{"bench", "--hold", "1ms"},
		{"bench", "extra"},
	} {
		code, _, errOut := runArgs(args...)
		if code != 2 || errOut == "" {
			t.Errorf("%v: code %d, stderr %q; want 2 and a message", args, code, errOut)
		}
	}
}
