package eventstore_test

import (
	"testing"

	"github.com/esgen-dev/esgen/eventstore"
)

func pos(tx uint64, p int64) eventstore.Position {
	return eventstore.Position{TransactionID: tx, GlobalPosition: p}
}

func TestCursorHandled(t *testing.T) {
	c := eventstore.Cursor{Position: pos(120, 50), Holes: []eventstore.Hole{{TransactionID: 105, Position: 30}}}
	for _, tc := range []struct {
		p    eventstore.Position
		want bool
	}{
		{pos(100, 99), true},  // below the cursor, not a hole
		{pos(105, 30), true},  // a hole's rows up to its position
		{pos(105, 31), false}, // a hole's later rows
		{pos(120, 50), true},  // the cursor itself
		{pos(120, 51), false}, // after it
		{pos(121, 1), false},
	} {
		if got := c.Handled(tc.p); got != tc.want {
			t.Errorf("%s handled by %s: %v, want %v", tc.p, c, got, tc.want)
		}
	}
	if low := c.Low(); low != pos(105, 30) {
		t.Errorf("low watermark %s, want 105/30", low)
	}
}

func TestMeet(t *testing.T) {
	// Partition a passed transaction 100 while it ran; partition b later handled its
	// rows up to position 50 and stopped there. The meet must not count 100's rows
	// after position 0 as handled, although they are at or before b's position.
	a := eventstore.Cursor{Position: pos(110, 70), Holes: []eventstore.Hole{{TransactionID: 90, Position: 5}, {TransactionID: 100}}}
	b := eventstore.Cursor{Position: pos(100, 50), Holes: []eventstore.Hole{{TransactionID: 90, Position: 2}}}
	m := eventstore.Meet(a, b)
	want := eventstore.Cursor{Position: pos(100, 0), Holes: []eventstore.Hole{{TransactionID: 90, Position: 2}}}
	if !m.Equal(want) {
		t.Fatalf("meet = %s, want %s", m, want)
	}
	for _, p := range []eventstore.Position{pos(90, 3), pos(100, 10), pos(105, 1)} {
		if m.Handled(p) {
			t.Errorf("meet counts %s as handled; a or b did not handle it", p)
		}
	}
	if !eventstore.Passed([]eventstore.Cursor{{Position: pos(120, 1)}}, []eventstore.Cursor{a, b}) {
		t.Error("a cursor past both is not reported as having passed them")
	}
	if eventstore.Passed([]eventstore.Cursor{{Position: pos(120, 1), Holes: []eventstore.Hole{{TransactionID: 101}}}}, []eventstore.Cursor{a, b}) {
		t.Error("a cursor with a hole before a's position is reported as having passed it")
	}
}
