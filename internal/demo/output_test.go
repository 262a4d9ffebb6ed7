package demo

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Many goroutines print through the demo's stdout and stderr at once (here the same
// buffer, as in a test or with 2>&1): every line arrives whole.
func TestSerializedOutputKeepsLinesWhole(t *testing.T) {
	var buf bytes.Buffer
	stdout, stderr := serialize(&buf, &buf)
	const goroutines, lines = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		w := stdout
		if g%2 == 1 {
			w = stderr
		}
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(w, "[worker %d] line %d of a log long enough to be copied in more than one step\n", g, i)
			}
		})
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(got) != goroutines*lines {
		t.Fatalf("%d lines, want %d", len(got), goroutines*lines)
	}
	whole := regexp.MustCompile(`^\[worker \d\] line \d+ of a log long enough to be copied in more than one step$`)
	for _, l := range got {
		if !whole.MatchString(l) {
			t.Fatalf("a line was torn: %q", l)
		}
	}
}
