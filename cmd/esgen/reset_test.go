package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/projection"
)

func TestResetCommand(t *testing.T) {
	t.Parallel()
	url, pool := projectionDB(t)
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	// Without --yes: refused, explained, nothing deleted.
	if code := run(ctx, []string{"reset", "--database", url, "counts"}, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "refusing without --yes") || !strings.Contains(stderr.String(), "clear its read model") {
		t.Fatalf("without --yes: exit %d, stderr %q", code, stderr.String())
	}
	if _, err := projection.Status(ctx, pool, "counts"); err != nil {
		t.Fatalf("refused reset deleted something: %v", err)
	}
	// With --yes (after the name, too).
	stderr.Reset()
	if code := run(ctx, []string{"reset", "counts", "--yes", "--database", url}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "deleted the checkpoints of projection counts") {
		t.Errorf("stdout: %q", stdout.String())
	}
	if _, err := projection.Status(ctx, pool, "counts"); !errors.Is(err, projection.ErrNotFound) {
		t.Fatalf("after reset: %v", err)
	}
	stderr.Reset()
	if code := run(ctx, []string{"reset", "--yes", "--database", url, "counts"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "nothing to reset") {
		t.Errorf("second reset: exit %d, %s", code, stderr.String())
	}
	stderr.Reset()
	if code := run(ctx, []string{"reset", "--yes", "--database", url}, &stdout, &stderr); code != 2 {
		t.Errorf("no name: exit %d, %s", code, stderr.String())
	}
}
