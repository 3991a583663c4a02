package engine_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
	"ordercore/barrier"
	"ordercore/internal/engine"
	"ordercore/internal/pgtest"
	"ordercore/internal/verify"
	"ordercore/postgres"
)

// The stock participant's barrier is checked three ways: against a model written from the
// barrier package's documented cases (outcomes, holds and stock), against the barrier
// package itself driving a trivial participant through the same sequences (the decisions
// and the barrier rows must be the same), and under concurrency (a try and its cancel at
// once, on SQLite and on two PostgreSQL instances).

// Stock for the TCC tests: a try ("try") holds one unit of plenty; a failing try ("try!")
// asks for one unit of scarce, which has none.
const (
	plenty = "plenty"
	scarce = "scarce"
)

func tccBranch(gid, branch string) engine.TCCBranch {
	return engine.TCCBranch{TransType: ordercore.BarrierTCC, GID: gid, BranchID: branch}
}

// tccCommand returns the command of a step: "try", "try!" (a try refused for lack of
// stock), "confirm" or "cancel".
func tccCommand(br engine.TCCBranch, step string) engine.Command {
	switch step {
	case "try":
		return engine.TCCTry{Branch: br, Lines: []ordercore.HoldLine{{SKU: plenty, Quantity: 1}}}
	case "try!":
		return engine.TCCTry{Branch: br, Lines: []ordercore.HoldLine{{SKU: scarce, Quantity: 1}}}
	case "confirm":
		return engine.TCCConfirm{Branch: br}
	case "cancel":
		return engine.TCCCancel{Branch: br}
	}
	panic("unknown step " + step)
}

// tccOutcome names how a TCC command ended: its BranchResult's outcome, or the error code.
func tccOutcome(res engine.Result, err error) string {
	if err != nil {
		return ordercore.ErrorCode(err)
	}
	return res.Value.(engine.BranchResult).Outcome
}

// holdModel is the specification for one branch, written from the barrier package's cases
// and the hold's rules, not from the engine's code.
type holdModel struct {
	tryRow     string // "", or the op whose run wrote it: try or cancel
	cancelRow  bool
	confirmRow bool
	hold       ordercore.ReservationStatus // "" when the branch holds nothing
}

func (m *holdModel) apply(step string) string {
	switch step {
	case "try", "try!":
		switch m.tryRow {
		case "try":
			return engine.BranchDuplicate // whatever it asks for: the barrier skips its business
		case "cancel":
			return ordercore.EHangingTry
		}
		if step == "try!" {
			return ordercore.EInsufficientStock // nothing written: the next cancel is a null compensation
		}
		m.tryRow, m.hold = "try", ordercore.ReservationReserved
		return engine.BranchApplied
	case "cancel":
		switch {
		case m.tryRow == "":
			m.tryRow, m.cancelRow = "cancel", true
			return engine.BranchNullCompensation
		case m.cancelRow:
			return engine.BranchDuplicate
		case m.hold != ordercore.ReservationReserved:
			return ordercore.EHoldState // committed: sold stock cannot be released
		}
		m.cancelRow, m.hold = true, ordercore.ReservationReleased
		return engine.BranchApplied
	case "confirm":
		switch {
		case m.confirmRow:
			return engine.BranchDuplicate
		case m.hold == "":
			return ordercore.ENOTFOUND
		case m.hold != ordercore.ReservationReserved:
			return ordercore.EHoldState // released: the units are back on sale
		}
		m.confirmRow, m.hold = true, ordercore.ReservationCommitted
		return engine.BranchApplied
	}
	panic("unknown step " + step)
}

// rows is the barrier rows the model says the branch has, as "op:reason".
func (m *holdModel) rows() []string {
	var out []string
	if m.cancelRow {
		out = append(out, "cancel:cancel")
	}
	if m.confirmRow {
		out = append(out, "confirm:confirm")
	}
	if m.tryRow != "" {
		out = append(out, "try:"+m.tryRow)
	}
	return out
}

// arrangements returns every distinct order of a multiset holding each of ops between 0
// and countMax times (the empty sequence left out), as the barrier package's tests do.
func arrangements(ops []string, countMax int) [][]string {
	var out [][]string
	counts := make([]int, len(ops))
	var place func(left []int, seq []string)
	place = func(left []int, seq []string) {
		done := true
		for i, n := range left {
			if n == 0 {
				continue
			}
			done = false
			left[i]--
			place(left, append(seq[:len(seq):len(seq)], ops[i]))
			left[i]++
		}
		if done && len(seq) > 0 {
			out = append(out, seq)
		}
	}
	var choose func(i int)
	choose = func(i int) {
		if i == len(ops) {
			place(slices.Clone(counts), nil)
			return
		}
		for n := 0; n <= countMax; n++ {
			counts[i] = n
			choose(i + 1)
		}
	}
	choose(0)
	return out
}

// tccSequences are the orderings checked: every order of try, confirm and cancel, each
// absent, once or twice (270, as in barrier's TestOrderingsTCC), and every order of a
// refused try, a try, a confirm and a cancel, each at most once (64).
func tccSequences(t *testing.T) [][]string {
	a := arrangements([]string{"try", "confirm", "cancel"}, 2)
	b := arrangements([]string{"try!", "try", "confirm", "cancel"}, 1)
	if len(a) != 270 || len(b) != 64 {
		t.Fatalf("%d and %d sequences, want 270 and 64: the generator is broken", len(a), len(b))
	}
	return append(a, b...)
}

func tccSetup(t *testing.T) bundle {
	t.Helper()
	b := setup(t, engine.Config{})
	mustSKU(t, b.eng, plenty, 100_000)
	mustSKU(t, b.eng, scarce, 0)
	return b
}

// TestTCCOrderings runs every sequence on its own branch, all sequences at once (so many
// share a batch), each step after the previous one's answer, and checks every outcome,
// every hold, every branch's barrier rows and the stock against the model; then the
// whole database through verify.
func TestTCCOrderings(t *testing.T) {
	t.Parallel()
	b := tccSetup(t)
	seqs := tccSequences(t)
	got := make([][]string, len(seqs))
	var wg sync.WaitGroup
	for i, seq := range seqs {
		wg.Go(func() {
			br := tccBranch(fmt.Sprintf("order-%03d", i), "01")
			for _, step := range seq {
				got[i] = append(got[i], tccOutcome(b.eng.Submit(context.Background(), tccCommand(br, step), nil)))
			}
		})
	}
	wg.Wait()
	ctx := context.Background()
	var reserved, sold int64
	for i, seq := range seqs {
		m := &holdModel{}
		var want []string
		for _, step := range seq {
			want = append(want, m.apply(step))
		}
		name := strings.Join(seq, ",")
		if diff := cmp.Diff(want, got[i]); diff != "" {
			t.Errorf("%s: outcomes (-model +engine):\n%s", name, diff)
		}
		gid := fmt.Sprintf("order-%03d", i)
		holds, err := b.db.HoldsOf(ctx, gid, 10)
		if err != nil {
			t.Fatal(err)
		}
		var gotHold ordercore.ReservationStatus
		if len(holds) > 1 {
			t.Errorf("%s: %d holds for one branch", name, len(holds))
		} else if len(holds) == 1 {
			gotHold = holds[0].Status
		}
		if gotHold != m.hold {
			t.Errorf("%s: hold is %q, model %q", name, gotHold, m.hold)
		}
		switch m.hold {
		case ordercore.ReservationReserved:
			reserved++
		case ordercore.ReservationCommitted:
			sold++
		}
		if diff := cmp.Diff(m.rows(), barrierRows(t, b.db, gid)); diff != "" {
			t.Errorf("%s: barrier rows (-model +store):\n%s", name, diff)
		}
	}
	s, err := b.db.SKU(ctx, plenty)
	if err != nil {
		t.Fatal(err)
	}
	if s.Reserved != reserved || s.Sold != sold || s.Total != 100_000 {
		t.Errorf("sku %s = total %d, reserved %d, sold %d; want 100000, %d, %d", plenty, s.Total, s.Reserved, s.Sold, reserved, sold)
	}
	checkVerify(t, b.db)
}

// barrierRows lists a gid's barrier rows as "op:reason", sorted.
func barrierRows(t *testing.T, r ordercore.Reader, gid string) []string {
	t.Helper()
	rows, err := r.BarriersOf(context.Background(), gid, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, row := range rows {
		if row.TransType != ordercore.BarrierTCC {
			t.Errorf("%s: barrier row of trans_type %q", gid, row.TransType)
		}
		out = append(out, row.Op+":"+row.Reason)
	}
	slices.Sort(out)
	return out
}

func checkVerify(t *testing.T, d ordercore.Dumper) {
	t.Helper()
	snap, err := d.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range verify.Check(snap, time.Now()) {
		t.Error(v)
	}
}

// reference is a participant built on the barrier package with the least business that
// behaves like a hold: try inserts a reserved row (or fails, for "try!"), confirm and
// cancel move a reserved row and fail otherwise. The engine must decide every step as it
// does, and leave the same barrier rows.
type reference struct {
	db *sql.DB
	d  barrier.Dialect
}

func newReference(t *testing.T) *reference {
	t.Helper()
	// synchronous OFF: the reference's durability is not under test, and it runs
	// thousands of transactions one after the other.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "ref.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	r := &reference{db: db, d: barrier.Dialect{Engine: barrier.SQLite}}
	if err := barrier.Migrate(context.Background(), db, r.d); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE hold (gid TEXT, branch_id TEXT, status TEXT, PRIMARY KEY (gid, branch_id))"); err != nil {
		t.Fatal(err)
	}
	return r
}

var errRefused = fmt.Errorf("%w: refused by the business", barrier.ErrFailure)

// step runs one step and names its outcome in the reference's terms.
func (r *reference) step(gid, step string) string {
	op := strings.TrimSuffix(step, "!")
	br := barrier.Branch{TransType: barrier.TransTCC, GID: gid, BranchID: "01", Op: op}
	ran := false
	err := barrier.CallDB(context.Background(), r.db, r.d, br, func(tx *sql.Tx) error {
		ran = true
		var res sql.Result
		var err error
		switch step {
		case "try!":
			return errRefused
		case "try":
			res, err = tx.Exec("INSERT INTO hold VALUES (?, '01', 'reserved')", gid)
		case "confirm":
			res, err = tx.Exec("UPDATE hold SET status = 'committed' WHERE gid = ? AND status = 'reserved'", gid)
		case "cancel":
			res, err = tx.Exec("UPDATE hold SET status = 'released' WHERE gid = ? AND status = 'reserved'", gid)
		}
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errRefused
		}
		return nil
	})
	switch {
	case err == nil && ran:
		return "ran"
	case err == nil:
		return "skipped"
	case errors.Is(err, barrier.ErrHanging):
		return "hanging"
	case errors.Is(err, errRefused):
		return "refused"
	}
	return "error: " + err.Error()
}

func (r *reference) rows(t *testing.T, gid string) []string {
	t.Helper()
	rows, err := r.db.Query("SELECT op || ':' || reason FROM "+barrier.DefaultTable+" WHERE gid = ? ORDER BY 1", gid)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// asReference maps an engine outcome to the barrier package's terms.
func asReference(outcome string) string {
	switch outcome {
	case engine.BranchApplied:
		return "ran"
	case engine.BranchDuplicate, engine.BranchNullCompensation:
		return "skipped"
	case ordercore.EHangingTry:
		return "hanging"
	case ordercore.EInsufficientStock, ordercore.ENOTFOUND, ordercore.EHoldState:
		return "refused"
	}
	return outcome
}

// TestTCCMatchesBarrierPackage: for every sequence, the engine and a participant built on
// the barrier package decide every step the same way (run, skip, refuse as hanging, or
// run and refuse) and end with the same barrier rows.
func TestTCCMatchesBarrierPackage(t *testing.T) {
	t.Parallel()
	b := tccSetup(t)
	ref := newReference(t)
	for i, seq := range tccSequences(t) {
		gid := fmt.Sprintf("ref-%03d", i)
		br := tccBranch(gid, "01")
		var got, want []string
		for _, step := range seq {
			got = append(got, asReference(tccOutcome(b.eng.Submit(context.Background(), tccCommand(br, step), nil))))
			want = append(want, ref.step(gid, step))
		}
		name := strings.Join(seq, ",")
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: decisions (-barrier package +engine):\n%s", name, diff)
		}
		if diff := cmp.Diff(ref.rows(t, gid), barrierRows(t, b.db, gid)); diff != "" {
			t.Errorf("%s: barrier rows (-barrier package +engine):\n%s", name, diff)
		}
	}
	checkVerify(t, b.db)
}

// TestTCCFailedTryLeavesNothing: a try refused for lack of stock holds nothing and writes
// no barrier row (its transaction's share rolled back), so its cancel is a null
// compensation, after which the try is refused as hanging even once stock is there.
func TestTCCFailedTryLeavesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	ctx := context.Background()
	mustSKU(t, b.eng, "a", 3)
	mustSKU(t, b.eng, "b", 1)
	br := tccBranch("gid-short", "01")
	lines := []ordercore.HoldLine{{SKU: "a", Quantity: 2}, {SKU: "b", Quantity: 2}}
	if got := tccOutcome(b.eng.Submit(ctx, engine.TCCTry{Branch: br, Lines: lines}, nil)); got != ordercore.EInsufficientStock {
		t.Fatalf("try beyond the stock: %s, want %s", got, ordercore.EInsufficientStock)
	}
	for _, id := range []string{"a", "b"} {
		if s, _ := b.db.SKU(ctx, id); s.Reserved != 0 {
			t.Errorf("sku %s reserved %d after a refused try, want 0 (a line that fit must not be held either)", id, s.Reserved)
		}
	}
	if holds, _ := b.db.HoldsOf(ctx, br.GID, 10); len(holds) != 0 {
		t.Errorf("holds after a refused try: %+v", holds)
	}
	if rows := barrierRows(t, b.db, br.GID); len(rows) != 0 {
		t.Errorf("barrier rows after a refused try: %v, want none", rows)
	}
	if got := tccOutcome(b.eng.Submit(ctx, engine.TCCCancel{Branch: br}, nil)); got != engine.BranchNullCompensation {
		t.Fatalf("cancel after a refused try: %s, want %s", got, engine.BranchNullCompensation)
	}
	if _, err := b.eng.Submit(ctx, engine.Restock{SKU: "b", Quantity: 5}, nil); err != nil {
		t.Fatal(err)
	}
	if got := tccOutcome(b.eng.Submit(ctx, engine.TCCTry{Branch: br, Lines: lines}, nil)); got != ordercore.EHangingTry {
		t.Fatalf("try after the null compensation: %s, want %s", got, ordercore.EHangingTry)
	}
	if diff := cmp.Diff([]string{"cancel:cancel", "try:cancel"}, barrierRows(t, b.db, br.GID)); diff != "" {
		t.Errorf("barrier rows (-want +got):\n%s", diff)
	}
	// Another branch is served normally: the refusal was the branch's, not the SKU's.
	other := tccBranch("gid-short", "02")
	res, err := b.eng.Submit(ctx, engine.TCCTry{Branch: other, Lines: lines}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h := res.Value.(engine.BranchResult).Hold; h == nil || h.Status != ordercore.ReservationReserved || len(h.Lines) != 2 {
		t.Fatalf("try of another branch: %+v", res.Value)
	}
	checkVerify(t, b.db)
}

// TestTCCHoldLifecycle follows one hold through try and confirm, checking the ledger
// effect on the SKU, the hold, and the events (one per change, on the hold's timeline).
func TestTCCHoldLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{})
	ctx := context.Background()
	mustSKU(t, b.eng, "a", 10)
	br := tccBranch("gid-life", "stock")
	res, err := b.eng.Submit(ctx, engine.TCCTry{Branch: br, Lines: []ordercore.HoldLine{{SKU: "a", Quantity: 3}, {SKU: "a", Quantity: 2}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := res.Value.(engine.BranchResult).Hold
	if s, _ := b.db.SKU(ctx, "a"); s.Reserved != 5 || s.Available() != 5 {
		t.Fatalf("after try: %+v, want 5 reserved", s)
	}
	for range 2 {
		res, err = b.eng.Submit(ctx, engine.TCCConfirm{Branch: br}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	if r := res.Value.(engine.BranchResult); r.Outcome != engine.BranchDuplicate || r.Hold == nil || r.Hold.Status != ordercore.ReservationCommitted || r.Hold.Version != 2 {
		t.Fatalf("second confirm: %+v, want a duplicate answering the committed hold at version 2", r)
	}
	if s, _ := b.db.SKU(ctx, "a"); s.Reserved != 0 || s.Sold != 5 || s.Total != 10 {
		t.Fatalf("after confirm: %+v, want 5 sold", s)
	}
	evs, err := b.db.AggregateEvents(ctx, h.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	if diff := cmp.Diff([]string{ordercore.EventStockHeld, ordercore.EventHoldCommitted}, types); diff != "" {
		t.Errorf("hold events (-want +got):\n%s", diff)
	}
	if got := tccOutcome(b.eng.Submit(ctx, engine.TCCCancel{Branch: br}, nil)); got != ordercore.EHoldState {
		t.Errorf("cancel of a committed hold: %s, want %s", got, ordercore.EHoldState)
	}
	checkVerify(t, b.db)
}

// TestTCCValidationMatchesBarrier: a TCC branch is refused by the engine exactly when the
// barrier package refuses it (the engine cannot import the package, so it restates the
// rules); a saga branch, which the package accepts, the stock participant refuses.
func TestTCCValidationMatchesBarrier(t *testing.T) {
	t.Parallel()
	ids := []string{"", "g", "01", strings.Repeat("x", 128), strings.Repeat("x", 129), strings.Repeat("é", 64),
		strings.Repeat("é", 65), "a b", "tab\there", "nul\x00", "bad\xff", "line\nbreak", "ünïcödé-✓", "del\x7f", "c1\u0085"}
	for _, gid := range ids {
		for _, branch := range ids {
			br := barrier.Branch{TransType: barrier.TransTCC, GID: gid, BranchID: branch, Op: barrier.OpTry}
			want := br.Validate() == nil
			got := tccBranch(gid, branch).Validate() == nil
			if got != want {
				t.Errorf("gid %q branch %q: engine accepts %v, barrier accepts %v", gid, branch, got, want)
			}
		}
	}
	err := engine.TCCBranch{TransType: barrier.TransSaga, GID: "g", BranchID: "01"}.Validate()
	if ordercore.ErrorCode(err) != ordercore.EInvalidBranch {
		t.Errorf("saga branch: %v, want %s", err, ordercore.EInvalidBranch)
	}
	b := setup(t, engine.Config{})
	for _, cmd := range []engine.Command{
		engine.TCCTry{Branch: tccBranch("bad\xff", "01"), Lines: []ordercore.HoldLine{{SKU: "a", Quantity: 1}}},
		engine.TCCCancel{Branch: tccBranch("g", strings.Repeat("b", 129))},
		engine.TCCConfirm{Branch: engine.TCCBranch{GID: "g", BranchID: "01"}},
	} {
		if got := tccOutcome(b.eng.Submit(context.Background(), cmd, nil)); got != ordercore.EInvalidBranch {
			t.Errorf("%T: %s, want %s", cmd, got, ordercore.EInvalidBranch)
		}
	}
}

// TestTCCConcurrentTryCancel sends the try and the cancel of many branches at the same
// moment, with random delays so both orders occur, as a coordinator does when a try times
// out while still in flight. Each branch must end reserved-and-released or neither, the
// outcomes must say which, the SKU must be back where it started, and verify must pass.
// On PostgreSQL the try and the cancel of a branch go to two instances (two stores and
// engines on one schema, picked at random for each), so only the database orders them;
// its per-branch lock makes one wait for the other, so no batch fails on the barrier's
// primary key and nothing needs resending.
func TestTCCConcurrentTryCancel(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		b := setup(t, engine.Config{})
		mustSKU(t, b.eng, "hot", 1000)
		concurrentTryCancel(t, []*engine.Engine{b.eng}, b.db, b.db)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn, schema := pgSchema(t)
		ctx := context.Background()
		var engines [2]*engine.Engine
		var dbs [2]*postgres.DB
		for i := range engines {
			db, err := postgres.Open(ctx, dsn, postgres.Options{Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			eng := engine.New(db, ordercore.SystemClock{}, engine.Config{})
			t.Cleanup(func() { eng.Close(); db.Close() })
			engines[i], dbs[i] = eng, db
		}
		mustSKU(t, engines[0], "hot", 1000)
		concurrentTryCancel(t, engines[:], dbs[1], dbs[0])
	})
}

func concurrentTryCancel(t *testing.T, engines []*engine.Engine, r ordercore.Reader, d ordercore.Dumper) {
	const branches = 200
	const resendsMax = 10
	ctx := context.Background()
	type result struct{ try, cancel string }
	results := make([]result, branches)
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	resent := 0
	send := func(eng *engine.Engine, cmd engine.Command, got *string) {
		<-start
		time.Sleep(time.Duration(mrand.IntN(2000)) * time.Microsecond)
		for resends := 0; ; resends++ {
			res, err := eng.Submit(ctx, cmd, nil)
			*got = tccOutcome(res, err)
			if code := ordercore.ErrorCode(err); (code != ordercore.EUnavailable && code != ordercore.EOVERLOADED) || resends == resendsMax {
				return
			}
			t.Logf("%T resent after %v", cmd, err) // as a coordinator retries a 503
			mu.Lock()
			resent++
			mu.Unlock()
		}
	}
	for i := range branches {
		br := tccBranch("race", fmt.Sprintf("%03d", i))
		tryEng, cancelEng := engines[mrand.IntN(len(engines))], engines[mrand.IntN(len(engines))]
		wg.Go(func() {
			send(tryEng, engine.TCCTry{Branch: br, Lines: []ordercore.HoldLine{{SKU: "hot", Quantity: 3}}}, &results[i].try)
		})
		wg.Go(func() { send(cancelEng, engine.TCCCancel{Branch: br}, &results[i].cancel) })
	}
	close(start)
	wg.Wait()
	holds, err := r.HoldsOf(ctx, "race", branches+1)
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]ordercore.StockHold{}
	for _, h := range holds {
		held[h.BranchID] = h
	}
	tryFirst, cancelFirst := 0, 0
	for i, res := range results {
		branch := fmt.Sprintf("%03d", i)
		h, ok := held[branch]
		switch {
		case res == result{engine.BranchApplied, engine.BranchApplied} && ok && h.Status == ordercore.ReservationReleased:
			tryFirst++
		case res == result{ordercore.EHangingTry, engine.BranchNullCompensation} && !ok:
			cancelFirst++
		default:
			t.Errorf("branch %s: try %s, cancel %s, hold %+v (held: %v): neither order", branch, res.try, res.cancel, h, ok)
		}
	}
	t.Logf("try first: %d, cancel first: %d", tryFirst, cancelFirst)
	if resent > 0 {
		t.Errorf("%d operations failed with a retryable error and were resent; want none", resent)
	}
	s, err := r.SKU(ctx, "hot")
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != 1000 || s.Reserved != 0 || s.Sold != 0 {
		t.Errorf("sku after every branch was cancelled: %+v, want 1000 total and nothing reserved or sold", s)
	}
	checkVerify(t, d)
}

// pgSchema names a fresh schema of the test database, dropped when the test ends.
func pgSchema(t *testing.T) (dsn, schema string) { return pgtest.Schema(t, "ordercore_test_") }
