package examples_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// caughtUp holds when the balances read model reflects every stored event: each
// account's version is the number of its events.
func caughtUp(ctx context.Context, r *runner) error {
	events, err := r.count(ctx, `SELECT count(*) FROM esgen_events`)
	if err != nil {
		return err
	}
	applied, err := r.count(ctx, `SELECT coalesce(sum(version), 0) FROM balances`)
	if err != nil {
		return err
	}
	if events == 0 || applied != events {
		return fmt.Errorf("%d events stored, %d applied", events, applied)
	}
	return nil
}

// tableShows checks the psql output of the balances query: every account acct-001 …
// acct-010 with the given balance and version.
func tableShows(balance, version int) check {
	return func(ctx context.Context, r *runner) error {
		out := r.lastOutput()
		for i := 1; i <= 10; i++ {
			re := regexp.MustCompile(fmt.Sprintf(`(?m)^\s*acct-%03d\s*\|\s*owner %d\s*\|\s*%d\s*\|\s*%d\s*$`, i, i, balance, version))
			if !re.MatchString(out) {
				return fatalf("psql shows no row for acct-%03d with balance %d at version %d:\n%s", i, balance, version, out)
			}
		}
		if !strings.Contains(out, "(10 rows)") {
			return fatalf("psql does not show 10 rows:\n%s", out)
		}
		return nil
	}
}

func TestBasic(t *testing.T) {
	t.Parallel()
	before := treeHashes(t, "basic")
	r := runExample(t, "basic", map[string]check{
		"caught-up":    caughtUp,
		"first-table":  tableShows(45, 7),
		"second-table": tableShows(90, 13),
	})
	if t.Failed() {
		return
	}
	log := r.logOf("projector")
	if len(findLogs(log, "partition started", "projection", "balances", "partition", "0", "total_partitions", "1")) != 1 ||
		len(findLogs(log, "partition stopped", "partition", "0", "events_processed", "130")) != 1 ||
		len(findLogs(log, "projector stopped")) != 1 {
		t.Errorf("the projector's log does not show partition 0 of 1 starting, then stopping after 130 events:\n%s", log)
	}
	// The README's go generate changed no file.
	after := treeHashes(t, "basic")
	for path, h := range before {
		if after[path] != h {
			t.Errorf("go generate changed %s", path)
		}
	}
	for path := range after {
		if _, ok := before[path]; !ok {
			t.Errorf("go generate created %s", path)
		}
	}
}

// treeHashes returns the SHA-256 of every file under dir but bin/.
func treeHashes(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "bin" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[path] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
