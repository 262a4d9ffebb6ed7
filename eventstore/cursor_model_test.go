package eventstore

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// The model test runs the cursor bookkeeping of the gap-safe reader against a small
// simulation of what PostgreSQL does with esgen's appends: transaction ids assigned at
// the first write, global positions taken at insert time (so they do not follow commit
// order), the per-aggregate advisory lock taken before the transaction id, the 40001
// rule for a transaction that wrote elsewhere first, commits and rollbacks in random
// order, and snapshots as pg_current_snapshot() reports them (xmax = latest completed
// transaction + 1, the running ids below it). Readers of several partitions read with
// small limits, handle a read in several batches (the rest of a read is the next
// batch), sometimes handle only a prefix of a batch (a failing handler), sometimes
// move idle to the snapshot's head. At the end every reader must have handled every
// committed event of its partition exactly once, each aggregate in version order.

type modelTx struct {
	xid       uint64 // 0 until the transaction writes
	agg       int
	events    int
	elsewhere bool // writes another table before it appends
	appended  bool
	done      bool
	committed bool
	rows      []int // indexes into model.rows
	headVer   int64 // the aggregate's version after this transaction's append
}

type modelRow struct {
	pos  Position
	agg  int
	ver  int64
	hash uint32
	tx   *modelTx
}

type modelAgg struct {
	hash    uint32
	version int64  // committed version
	lastTx  uint64 // last committed appending transaction
	holder  *modelTx
}

type model struct {
	rng             *rand.Rand
	nextXid         uint64
	latestCompleted uint64
	nextPos         int64
	aggs            []*modelAgg
	txs             []*modelTx // running
	rows            []modelRow
	no40001         bool // plant a bug in the simulated database: drop the 40001 rule
	stats           *modelStats

	live    modelLayout   // the partition layout in force
	retired []modelLayout // earlier layouts not yet passed by every live cursor
	handled []Event       // every event handled, by any partition of any layout, in order

	// held is, per partition of the live layout, the rest of its last read: a read
	// returns up to several batches, handled one batch per step, as the projection
	// runtime does (it reads more events per statement than it handles per
	// transaction).
	held      map[int]heldRead
	heldBlind bool // plant a bug: use the rest of a read without checking the cursor
}

type heldRead struct {
	b   Batch
	off int // b.Events[off:] are not handled
}

// modelStats counts what the histories exercised, so that the test can show it covered
// the cases that matter.
type modelStats struct {
	holeRows   int // events delivered from holes (late commits)
	heldUsed   int // batches handled from the rest of an earlier read
	cut        int // batches cut by the limit or a failing handler
	serialized int // appends refused with 40001
	rolledBack int
	switches   int // changes of the partition count
}

func (m *model) assignXid(t *modelTx) {
	if t.xid == 0 {
		t.xid = m.nextXid
		m.nextXid++
	}
}

// step advances one running transaction: it appends (taking the aggregate's lock
// first), or ends.
func (m *model) step(t *modelTx) {
	if t.elsewhere {
		m.assignXid(t)
	}
	a := m.aggs[t.agg]
	if !t.appended {
		if a.holder != nil && a.holder != t {
			return // waits for the lock
		}
		a.holder = t
		m.assignXid(t)
		if !m.no40001 && a.lastTx > t.xid {
			m.stats.serialized++
			m.end(t, false) // serialization failure: the transaction is rolled back
			return
		}
		for i := range t.events {
			t.rows = append(t.rows, len(m.rows))
			m.rows = append(m.rows, modelRow{
				pos: Position{TransactionID: t.xid, GlobalPosition: m.nextPos},
				agg: t.agg, ver: a.version + int64(i) + 1, hash: a.hash, tx: t,
			})
			m.nextPos++
		}
		t.headVer = a.version + int64(t.events)
		t.appended = true
		return
	}
	commit := m.rng.IntN(20) != 0
	if !commit {
		m.stats.rolledBack++
	}
	m.end(t, commit)
}

func (m *model) end(t *modelTx, commit bool) {
	t.done, t.committed = true, commit
	a := m.aggs[t.agg]
	if commit && t.appended && t.events > 0 {
		a.version, a.lastTx = t.headVer, t.xid
	}
	if a.holder == t {
		a.holder = nil
	}
	if t.xid != 0 {
		m.latestCompleted = max(m.latestCompleted, t.xid)
	}
	m.txs = slices.DeleteFunc(m.txs, func(x *modelTx) bool { return x == t })
}

func (m *model) snapshot() Snapshot {
	s := Snapshot{Xmax: m.latestCompleted + 1}
	for _, t := range m.txs {
		if t.xid != 0 && t.xid < s.Xmax {
			s.Running = append(s.Running, t.xid)
		}
	}
	slices.Sort(s.Running)
	for _, r := range m.rows { // the newest committed event, as a reader that asks for it gets it
		if m.visible(r, s) && s.Head.Less(r.pos) {
			s.Head = r.pos
		}
	}
	return s
}

func (m *model) visible(r modelRow, s Snapshot) bool {
	return r.tx.committed && s.Ended(r.tx.xid)
}

// read is what the read statement returns for a cursor: the rows of ended holes after
// their positions, and the rows after the cursor's position, each in commit order and
// cut to the limit, in one snapshot; rows that a retired layout handled are left out.
func (m *model) read(c Cursor, s Snapshot, partition, partitions, limit int) (holes, after []Event) {
	var hs, rs []Event
	for _, r := range m.rows {
		if !m.visible(r, s) || int(r.hash%uint32(partitions)) != partition || m.handledByRetired(r) {
			continue
		}
		ev := Event{Position: r.pos, AggregateID: fmt.Sprint(r.agg), AggregateVersion: r.ver, PartitionHash: r.hash}
		for _, h := range c.Holes {
			if h.TransactionID == r.pos.TransactionID && r.pos.GlobalPosition > h.Position {
				hs = append(hs, ev)
			}
		}
		if c.Position.Less(r.pos) {
			rs = append(rs, ev)
		}
	}
	byPos := func(a, b Event) int {
		if a.Position.Less(b.Position) {
			return -1
		}
		return 1
	}
	slices.SortFunc(hs, byPos)
	slices.SortFunc(rs, byPos)
	return hs[:min(limit, len(hs))], rs[:min(limit, len(rs))]
}

// modelLayout is a partition count with a cursor per partition.
type modelLayout struct{ cursors []Cursor }

func (l modelLayout) handled(r modelRow) bool {
	return l.cursors[r.hash%uint32(len(l.cursors))].Handled(r.pos)
}

func (m *model) handledByRetired(r modelRow) bool {
	return slices.ContainsFunc(m.retired, func(l modelLayout) bool { return l.handled(r) })
}

// readerStep runs one batch of partition k of the live layout: up to limit events,
// from the rest of its last read when that read left some at its cursor, else from a
// new read of up to a few batches.
func (m *model) readerStep(k, limit int) bool {
	c := m.live.cursors[k]
	var b Batch
	off, fresh := 0, true
	if h, ok := m.held[k]; ok && (m.heldBlind || h.b.Next(h.off).Equal(c)) && m.rng.IntN(4) != 0 {
		b, off, fresh = h.b, h.off, false
		m.stats.heldUsed++
	} else {
		s := m.snapshot()
		readLimit := limit * (1 + m.rng.IntN(3))
		hs, rs := m.read(c, s, k, len(m.live.cursors), readLimit)
		b = NewBatch(c, s, hs, rs, readLimit)
		if len(hs)+len(rs) > readLimit {
			m.stats.cut++
		}
	}
	delete(m.held, k)
	end := min(off+limit, len(b.Events))
	n := end
	if end-off > 1 && m.rng.IntN(5) == 0 {
		n = off + m.rng.IntN(end-off) // a handler failed: only the events before it commit
		m.stats.cut++
	}
	m.handled = append(m.handled, b.Events[off:n]...)
	if fresh {
		m.stats.holeRows += min(n, len(b.holeRows))
	}
	if n == len(b.Events) && m.rng.IntN(3) == 0 {
		m.live.cursors[k] = b.Head()
	} else {
		m.live.cursors[k] = b.Next(n)
	}
	if n < len(b.Events) && (n == end || m.heldBlind) {
		m.held[k] = heldRead{b: b, off: end}
	}
	m.dropFinished()
	return end > off
}

// switchLayout changes the partition count: the live layout is retired as it is, and
// every partition of the new one starts at the meet of its cursors.
func (m *model) switchLayout(partitions int) {
	start := Meet(m.live.cursors...)
	m.retired = append(m.retired, m.live)
	m.live = modelLayout{cursors: make([]Cursor, partitions)}
	m.held = map[int]heldRead{}
	for i := range m.live.cursors {
		m.live.cursors[i] = Cursor{Position: start.Position, Holes: slices.Clone(start.Holes)}
	}
	m.stats.switches++
}

// dropFinished forgets the retired layouts that every live cursor has passed.
func (m *model) dropFinished() {
	m.retired = slices.DeleteFunc(m.retired, func(r modelLayout) bool { return Passed(m.live.cursors, r.cursors) })
}

// runHistory runs one random history and returns what went wrong, or "".
func runHistory(seed uint64, no40001, heldBlind bool, stats *modelStats) string {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m := &model{rng: rng, nextXid: 100, latestCompleted: 99, nextPos: 1, no40001: no40001, stats: stats,
		held: map[int]heldRead{}, heldBlind: heldBlind}
	m.live = modelLayout{cursors: make([]Cursor, 1+rng.IntN(3))}
	limit := 1 + rng.IntN(4)
	for range 2 + rng.IntN(5) {
		m.aggs = append(m.aggs, &modelAgg{hash: rng.Uint32()})
	}
	started, total := 0, 5+rng.IntN(25)
	for steps := 0; steps < 10000 && (started < total || len(m.txs) > 0); steps++ {
		switch k := rng.IntN(40); {
		case k < 12 && started < total && len(m.txs) < 6:
			started++
			t := &modelTx{agg: rng.IntN(len(m.aggs)), events: 1 + rng.IntN(3), elsewhere: rng.IntN(5) == 0}
			if rng.IntN(10) == 0 {
				t.events = 0 // a transaction that only writes elsewhere
				t.elsewhere = true
				t.appended = true
			}
			m.txs = append(m.txs, t)
		case k < 28 && len(m.txs) > 0:
			m.step(m.txs[rng.IntN(len(m.txs))])
		case k == 39:
			m.switchLayout(1 + rng.IntN(4))
		default:
			m.readerStep(rng.IntN(len(m.live.cursors)), limit)
		}
	}
	for len(m.txs) > 0 { // end what is left
		m.step(m.txs[0])
	}
	for k := range m.live.cursors {
		for i := 0; m.readerStep(k, limit) || len(m.live.cursors[k].Holes) > 0; i++ {
			if i > 10000 {
				return fmt.Sprintf("partition %d does not drain: cursor %s", k, m.live.cursors[k])
			}
		}
	}
	return m.check()
}

// check compares what the readers handled, in the order they handled it, with the
// committed events.
func (m *model) check() string {
	seen := map[Position]bool{}
	lastVer := map[string]int64{}
	for _, ev := range m.handled {
		if seen[ev.Position] {
			return fmt.Sprintf("event %s handled twice", ev.Position)
		}
		seen[ev.Position] = true
		if ev.AggregateVersion != lastVer[ev.AggregateID]+1 {
			return fmt.Sprintf("aggregate %s version %d handled after version %d", ev.AggregateID, ev.AggregateVersion, lastVer[ev.AggregateID])
		}
		lastVer[ev.AggregateID] = ev.AggregateVersion
	}
	for _, r := range m.rows {
		if r.tx.committed && !seen[r.pos] {
			return fmt.Sprintf("committed event %s (aggregate %d version %d) never handled", r.pos, r.agg, r.ver)
		}
		if !r.tx.committed && seen[r.pos] {
			return fmt.Sprintf("rolled-back event %s handled", r.pos)
		}
	}
	return ""
}

func TestCursorModel(t *testing.T) {
	histories := 10000
	if testing.Short() {
		histories = 500
	}
	var stats modelStats
	for seed := range uint64(histories) {
		if msg := runHistory(seed, false, false, &stats); msg != "" {
			t.Fatalf("history %d: %s", seed, msg)
		}
	}
	t.Logf("%d histories: %+v", histories, stats)
	if stats.holeRows == 0 || stats.cut == 0 || stats.serialized == 0 || stats.rolledBack == 0 || stats.switches == 0 || stats.heldUsed == 0 {
		t.Fatalf("the histories missed a case: %+v", stats)
	}
}

// TestCursorModelFindsPlantedBugs shows that the model test can fail: with each bug
// planted, some history goes wrong.
func TestCursorModelFindsPlantedBugs(t *testing.T) {
	cases := []struct {
		name      string
		bug       int
		no40001   bool
		heldBlind bool
	}{
		{"running transactions passed are not remembered", bugForgetPassed, false, false},
		{"a hole is closed although the limit cut through its rows", bugCloseCutHole, false, false},
		{"appends without the 40001 rule", bugNone, true, false},
		{"a new layout starts without the holes of the old one", bugMeetIgnoresHoles, false, false},
		{"a retired layout is forgotten before the live cursors passed it", bugForgetEarly, false, false},
		{"the rest of a read is handled although the cursor is elsewhere", bugNone, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plantedBug = c.bug
			defer func() { plantedBug = bugNone }()
			for seed := range uint64(4000) {
				if msg := runHistory(seed, c.no40001, c.heldBlind, &modelStats{}); msg != "" {
					t.Logf("history %d: %s", seed, msg)
					return
				}
			}
			t.Fatal("no history went wrong with the bug planted")
		})
	}
}
