package eventstore

import (
	"fmt"
	"slices"
	"strings"
)

// Hole is a transaction that a [Cursor] passed while it was still running. Its rows
// up to Position are handled; the rest are delivered once the transaction has ended.
type Hole struct {
	TransactionID uint64 `json:"transaction_id"`
	Position      int64  `json:"position"` // 0: none of its rows handled yet
}

// Cursor is a gap-safe place in the stream: every event at or before Position is
// handled, except the rows of the Holes after their positions.
//
// The invariant a Cursor keeps: every transaction id below Position.TransactionID has
// either ended with all its rows handled, or is one of the Holes, whose rows up to the
// hole's position are handled. Holes are only transactions that were running when
// the cursor passed them, so there are never more of them than the server had running
// transactions. A cursor without holes is the commit-safe position of earlier
// releases.
type Cursor struct {
	Position
	Holes []Hole `json:"holes,omitempty"` // sorted by transaction id
}

// Low is the cursor's low watermark: the earliest position after which an event may
// still be unhandled (the earliest hole, or Position when there is none).
func (c Cursor) Low() Position {
	low := c.Position
	for _, h := range c.Holes {
		if p := (Position{TransactionID: h.TransactionID, GlobalPosition: h.Position}); p.Less(low) {
			low = p
		}
	}
	return low
}

// Handled reports whether p, the position of an event, is handled according to c.
func (c Cursor) Handled(p Position) bool {
	if c.Position.Less(p) {
		return false
	}
	for _, h := range c.Holes {
		if h.TransactionID == p.TransactionID {
			return p.GlobalPosition <= h.Position
		}
	}
	return true
}

// hole reports whether transaction x is one of c's holes.
func (c Cursor) hole(x uint64) bool {
	return slices.ContainsFunc(c.Holes, func(h Hole) bool { return h.TransactionID == x })
}

// Equal reports whether c and d are the same cursor.
func (c Cursor) Equal(d Cursor) bool {
	return c.Position == d.Position && slices.Equal(c.Holes, d.Holes)
}

// Meet returns the cursor at which a reader starts that takes over from readers at
// cursors cs, each of which handled its own share of the stream: every event that the
// result counts as handled, each of cs counts as handled too. Its position is the
// earliest of theirs; their holes below it are kept, each at the earliest position any
// of them had it at. A reader starting there reads again the events that some of cs
// handled past it, and must leave those out itself (the projection runtime does, in
// SQL, after a change of the partition count).
func Meet(cs ...Cursor) Cursor {
	if len(cs) == 0 {
		return Cursor{}
	}
	m := Cursor{Position: cs[0].Position}
	for _, c := range cs[1:] {
		if c.Position.Less(m.Position) {
			m.Position = c.Position
		}
	}
	at := map[uint64]int{} // transaction id → index in m.Holes: linear in all holes
	for _, c := range cs {
		for _, h := range c.Holes {
			switch {
			case h.TransactionID == m.TransactionID:
				// Its rows after h.Position are read after the position instead.
				m.GlobalPosition = min(m.GlobalPosition, h.Position)
			case h.TransactionID < m.TransactionID:
				if i, ok := at[h.TransactionID]; ok {
					m.Holes[i].Position = min(m.Holes[i].Position, h.Position)
				} else {
					at[h.TransactionID] = len(m.Holes)
					m.Holes = append(m.Holes, h)
				}
			}
		}
	}
	slices.SortFunc(m.Holes, func(a, b Hole) int { return cmpUint(a.TransactionID, b.TransactionID) })
	if plantedBug == bugMeetIgnoresHoles {
		m.Holes = nil
	}
	return m
}

// Passed reports whether readers at cursors cs can no longer read any event at or
// before one of the positions of earlier: every low watermark of cs is at or after
// all of them. Once it holds, what earlier handled no longer needs to be left out of
// their reads (a retired partition layout can be forgotten).
func Passed(cs []Cursor, earlier []Cursor) bool {
	if plantedBug == bugForgetEarly {
		return true
	}
	if len(cs) == 0 {
		return true
	}
	// The earliest low watermark against the latest position: linear in both.
	low := cs[0].Low()
	for _, c := range cs[1:] {
		if l := c.Low(); l.Less(low) {
			low = l
		}
	}
	for _, e := range earlier {
		if low.Less(e.Position) {
			return false
		}
	}
	return true
}

// HoleArrays returns the holes as two parallel arrays (transaction ids, positions), the
// form in which the checkpoint table and the read statement take them.
func (c Cursor) HoleArrays() (txs []uint64, positions []int64) {
	txs = make([]uint64, len(c.Holes))
	positions = make([]int64, len(c.Holes))
	for i, h := range c.Holes {
		txs[i], positions[i] = h.TransactionID, h.Position
	}
	return txs, positions
}

// CursorFromArrays is the inverse of [Cursor.HoleArrays].
func CursorFromArrays(p Position, txs []uint64, positions []int64) (Cursor, error) {
	if len(txs) != len(positions) {
		return Cursor{}, fmt.Errorf("eventstore: cursor %s: %d hole transactions but %d hole positions", p, len(txs), len(positions))
	}
	c := Cursor{Position: p}
	if len(txs) > 0 {
		c.Holes = make([]Hole, len(txs))
		for i := range txs {
			c.Holes[i] = Hole{TransactionID: txs[i], Position: positions[i]}
		}
		slices.SortFunc(c.Holes, func(a, b Hole) int { return cmpUint(a.TransactionID, b.TransactionID) })
	}
	return c, nil
}

// String prints the position and, when there are any, the holes:
// "812/40211 holes=[805/0 809/40100]".
func (c Cursor) String() string {
	if len(c.Holes) == 0 {
		return c.Position.String()
	}
	var b strings.Builder
	b.WriteString(c.Position.String())
	b.WriteString(" holes=[")
	for i, h := range c.Holes {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d/%d", h.TransactionID, h.Position)
	}
	b.WriteByte(']')
	return b.String()
}

// Snapshot is what a read learned about running transactions, from the
// pg_current_snapshot() of the statement that read the rows: every transaction id
// below Xmax that is not in Running had ended when the rows were read, so its rows
// were either all visible (it committed) or will never be (it aborted).
type Snapshot struct {
	Xmax    uint64
	Running []uint64 // sorted
	// Head is the position of the newest event committed in the snapshot, when the
	// read asked for it (zero otherwise, or when there is none).
	Head Position
}

func (s Snapshot) running(x uint64) bool {
	_, found := slices.BinarySearch(s.Running, x)
	return found
}

// Ended reports whether transaction x had ended when the snapshot was taken.
func (s Snapshot) Ended(x uint64) bool { return x < s.Xmax && !s.running(x) }

// Batch is one read of a cursor's successors: the rows of holes whose transactions
// have ended, then the rows after the cursor's position, cut to the read's limit.
// Both parts come from one statement and one snapshot. [Batch.Next] says where the
// cursor is once a prefix of Events is handled.
type Batch struct {
	Events []Event

	from          Cursor
	snap          Snapshot
	holeRows      []Position // positions of the hole rows read, in order
	rangeRows     []Position // positions of the rows after the cursor read, in order
	holesComplete bool       // every row of the ended holes was read
	rangeComplete bool       // every visible row after the cursor was read
}

// NewBatch assembles a batch read at cursor from with snapshot snap: holeRows are the
// rows of ended holes after their positions in (transaction id, position) order, read
// with limit; rangeRows are the rows after from.Position in the same order, read with
// the same limit. Events are the hole rows followed by the range rows, at most limit
// of them: that order keeps every aggregate in version order, since an aggregate's
// later versions belong to younger transactions.
func NewBatch(from Cursor, snap Snapshot, holeRows, rangeRows []Event, limit int) Batch {
	b := Batch{
		from:          from,
		snap:          snap,
		holesComplete: len(holeRows) < limit,
		rangeComplete: len(rangeRows) < limit,
		holeRows:      make([]Position, len(holeRows)),
		rangeRows:     make([]Position, len(rangeRows)),
	}
	for i := range holeRows {
		b.holeRows[i] = holeRows[i].Position
	}
	for i := range rangeRows {
		b.rangeRows[i] = rangeRows[i].Position
	}
	if len(holeRows) == 0 { // the common case: no copy
		b.Events = rangeRows[:min(limit, len(rangeRows))]
		return b
	}
	b.Events = make([]Event, 0, min(limit, len(holeRows)+len(rangeRows)))
	b.Events = append(b.Events, holeRows[:min(limit, len(holeRows))]...)
	b.Events = append(b.Events, rangeRows[:min(limit-len(b.Events), len(rangeRows))]...)
	return b
}

// From is the cursor the batch was read at.
func (b *Batch) From() Cursor { return b.from }

// Snapshot is the snapshot the batch was read with.
func (b *Batch) Snapshot() Snapshot { return b.snap }

// Complete reports whether the batch holds every event its cursor had to handle when
// it was read: nothing more was visible.
func (b *Batch) Complete() bool {
	return b.holesComplete && b.rangeComplete && len(b.Events) == len(b.holeRows)+len(b.rangeRows)
}

// Next returns the cursor once the first n events of the batch are handled:
//   - an ended hole is dropped once all its rows are handled; when only some are, its
//     position moves to the last one handled;
//   - when rows after the cursor's position were handled, the position moves to the
//     last of them, and every transaction that was running between the old and the
//     new position becomes a hole at position 0.
//
// Holes still running stay as they are.
func (b *Batch) Next(n int) Cursor {
	n = max(0, min(n, len(b.Events)))
	nh := min(n, len(b.holeRows))
	nr := n - nh
	allHoleRows := b.holesComplete && nh == len(b.holeRows)
	var lastHole Position
	if nh > 0 {
		lastHole = b.holeRows[nh-1]
	}
	next := Cursor{Position: b.from.Position}
	for _, h := range b.from.Holes {
		if b.snap.Ended(h.TransactionID) {
			switch {
			case allHoleRows, plantedBug == bugCloseCutHole:
				continue // all its rows are handled (or it aborted and had none)
			case nh > 0 && h.TransactionID < lastHole.TransactionID:
				continue // its rows sort before the last one handled: all handled
			case nh > 0 && h.TransactionID == lastHole.TransactionID:
				h.Position = lastHole.GlobalPosition
			}
		}
		next.Holes = append(next.Holes, h)
	}
	if nr > 0 {
		last := b.rangeRows[nr-1]
		if plantedBug == bugForgetPassed {
			next.Position = last
			return next
		}
		next.Holes = b.passRunning(next.Holes, last.TransactionID)
		next.Position = last
	}
	return next
}

// Head returns the cursor once the whole batch is handled and, when the batch was
// [Batch.Complete] and its read asked for the head of the stream, moved on to that
// head (the newest committed event, of any partition or type), with every running
// transaction it passes as a hole. An idle reader saves it now and then, so that its
// low watermark follows the stream.
func (b *Batch) Head() Cursor {
	next := b.Next(len(b.Events))
	head := b.snap.Head
	if !b.Complete() || !next.Position.Less(head) {
		return next
	}
	next.Holes = b.passRunning(next.Holes, head.TransactionID)
	next.Position = head
	return next
}

// passRunning adds the transactions running in the snapshot from the cursor's
// transaction id up to (not including) upTo as holes at position 0.
func (b *Batch) passRunning(holes []Hole, upTo uint64) []Hole {
	added := false
	for _, x := range b.snap.Running {
		if x >= b.from.TransactionID && x < upTo && !slices.ContainsFunc(holes, func(h Hole) bool { return h.TransactionID == x }) {
			holes = append(holes, Hole{TransactionID: x})
			added = true
		}
	}
	if added {
		slices.SortFunc(holes, func(a, b Hole) int { return cmpUint(a.TransactionID, b.TransactionID) })
	}
	return holes
}

// Bugs planted on purpose by the model test, to show that it catches them. The zero
// value plants none.
var plantedBug int

const (
	bugNone             = iota
	bugForgetPassed     // running transactions the cursor passes are not remembered as holes
	bugCloseCutHole     // an ended hole is dropped although the limit cut through its rows
	bugMeetIgnoresHoles // a reader taking over from others starts without their holes
	bugForgetEarly      // retired cursors are forgotten before every reader passed them
)

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
