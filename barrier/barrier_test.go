package barrier_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"ordercore/barrier"
)

// outcome is what one call of a branch operation did, as seen from outside.
type outcome string

const (
	ran     outcome = "ran"     // fn ran and its effects committed
	skipped outcome = "skipped" // nil without running fn: a duplicate or a null compensation
	hanging outcome = "hanging" // ErrHanging without running fn
	failed  outcome = "failed"  // fn ran and failed; its effects and the barrier row rolled back
)

// classify names the outcome of a call from its error and whether fn ran.
func classify(err error, fnRan bool) outcome {
	switch {
	case err == nil && fnRan:
		return ran
	case err == nil:
		return skipped
	case errors.Is(err, barrier.ErrHanging) && !fnRan:
		return hanging
	case errors.Is(err, errBusiness) && fnRan:
		return failed
	}
	return outcome(fmt.Sprintf("unexpected (fn ran: %v): %v", fnRan, err))
}

// model is the barrier's specification for one branch, written from the cases of the
// package documentation and not from the algorithm: it knows which ops' effects are
// committed and whether a compensation (real or null) has been accepted.
type model struct {
	committed map[string]bool // op -> its business function's effects are committed
	undone    bool            // a cancel or compensate was accepted, with or without effects
}

func newModel() *model { return &model{committed: map[string]bool{}} }

// apply returns what op should do now, fail saying whether its business function would
// fail if run, and advances the model.
func (m *model) apply(op string, fail bool) outcome {
	switch op {
	case barrier.OpTry, barrier.OpAction:
		switch {
		case m.committed[op]:
			return skipped // duplicate, also after a cancel undid it
		case m.undone:
			return hanging
		}
	case barrier.OpCancel, barrier.OpCompensate:
		forward := map[string]string{barrier.OpCancel: barrier.OpTry, barrier.OpCompensate: barrier.OpAction}[op]
		switch {
		case m.undone:
			return skipped // duplicate
		case !m.committed[forward]:
			m.undone = true
			return skipped // null compensation
		}
	case barrier.OpConfirm:
		if m.committed[op] {
			return skipped
		}
	}
	if fail {
		return failed
	}
	m.committed[op] = true
	if op == barrier.OpCancel || op == barrier.OpCompensate {
		m.undone = true
	}
	return ran
}

// ledger is what the business table should hold for the branch: one run per committed op.
func (m *model) ledger() map[string]int {
	got := map[string]int{}
	for op, ok := range m.committed {
		if ok {
			got[op] = 1
		}
	}
	return got
}

// call runs one op of br through CallDB with the test's business function.
func (e env) call(br barrier.Branch, fail bool) outcome {
	var fnRan bool
	err := barrier.CallDB(context.Background(), e.db, e.d, br, e.effect(br, fail, &fnRan))
	return classify(err, fnRan)
}

// parseStep reads "try" or "try!", where ! makes the business function fail.
func parseStep(s string) (op string, fail bool) {
	op, fail = strings.CutSuffix(s, "!")
	return op, fail
}

// runSequence sends the ops to one branch of gid in order and returns the outcomes, then
// checks the ledger against the model and that no reservation hangs.
func runSequence(t *testing.T, e env, transType, gid string, steps []string) []outcome {
	t.Helper()
	m := newModel()
	var got, want []outcome
	for _, s := range steps {
		op, fail := parseStep(s)
		br := barrier.Branch{TransType: transType, GID: gid, BranchID: "01", Op: op}
		got = append(got, e.call(br, fail))
		want = append(want, m.apply(op, fail))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: outcomes (-model +barrier):\n%s", strings.Join(steps, ","), diff)
	}
	wantLedger := map[string]map[string]int{}
	if l := m.ledger(); len(l) > 0 {
		wantLedger["01"] = l
	}
	if diff := cmp.Diff(wantLedger, e.ledger(t, gid)); diff != "" {
		t.Errorf("%s: ledger (-model +database):\n%s", strings.Join(steps, ","), diff)
	}
	checkNoHanging(t, e, gid)
	return got
}

// checkNoHanging asserts, from the database alone, the property participants rely on:
// once a branch's compensation is recorded, its forward op's effect is either absent or
// undone, never left standing.
func checkNoHanging(t testing.TB, e env, gid string) {
	t.Helper()
	ledger := e.ledger(t, gid)
	for _, r := range e.barrierRows(t, gid) {
		var forward string
		switch r.Op {
		case barrier.OpCancel:
			forward = barrier.OpTry
		case barrier.OpCompensate:
			forward = barrier.OpAction
		default:
			continue
		}
		l := ledger[r.BranchID]
		if l[forward] != l[r.Op] || l[forward] > 1 {
			t.Errorf("%s/%s: %s recorded but the ledger has %d %s and %d %s: a hanging or doubled effect",
				gid, r.BranchID, r.Op, l[forward], forward, l[r.Op], r.Op)
		}
	}
}

// TestCases spells out the cases of the package documentation, outcomes written by hand.
// "!" marks a call whose business function fails.
func TestCases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		transType string
		steps     []string
		want      []outcome
	}{
		{"commit", barrier.TransTCC, []string{"try", "confirm"}, []outcome{ran, ran}},
		{"rollback", barrier.TransTCC, []string{"try", "cancel"}, []outcome{ran, ran}},
		{"duplicates", barrier.TransTCC, []string{"try", "try", "confirm", "confirm"}, []outcome{ran, skipped, ran, skipped}},
		{"duplicate cancel", barrier.TransTCC, []string{"try", "cancel", "cancel"}, []outcome{ran, ran, skipped}},
		{"null compensation", barrier.TransTCC, []string{"cancel"}, []outcome{skipped}},
		{"hanging try fails", barrier.TransTCC, []string{"cancel", "try"}, []outcome{skipped, hanging}},
		{"hanging try fails every time", barrier.TransTCC, []string{"cancel", "cancel", "try", "try"}, []outcome{skipped, skipped, hanging, hanging}},
		{"try retried after its cancel is a duplicate", barrier.TransTCC, []string{"try", "cancel", "try"}, []outcome{ran, ran, skipped}},
		{"failed try leaves nothing to cancel", barrier.TransTCC, []string{"try!", "cancel", "try"}, []outcome{failed, skipped, hanging}},
		{"failed try retried", barrier.TransTCC, []string{"try!", "try", "try"}, []outcome{failed, ran, skipped}},
		{"failed cancel retried", barrier.TransTCC, []string{"try", "cancel!", "cancel", "cancel"}, []outcome{ran, failed, ran, skipped}},
		{"failed confirm retried", barrier.TransTCC, []string{"try", "confirm!", "confirm"}, []outcome{ran, failed, ran}},
		{"saga commit", barrier.TransSaga, []string{"action", "action"}, []outcome{ran, skipped}},
		{"saga compensation", barrier.TransSaga, []string{"action", "compensate", "compensate"}, []outcome{ran, ran, skipped}},
		{"saga null compensation", barrier.TransSaga, []string{"compensate", "action"}, []outcome{skipped, hanging}},
		{"saga failed action", barrier.TransSaga, []string{"action!", "compensate", "action"}, []outcome{failed, skipped, hanging}},
	}
	engines(t, func(t *testing.T, e env) {
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := runSequence(t, e, tt.transType, fmt.Sprintf("case-%02d", i), tt.steps)
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("outcomes (-want +got):\n%s", diff)
				}
			})
		}
	})
}

// TestBarrierRows checks what the table records: a null compensation writes the forward
// op's row with reason cancel, which is what later rejects the try.
func TestBarrierRows(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, e env) {
		runSequence(t, e, barrier.TransTCC, "null", []string{"cancel", "try"})
		runSequence(t, e, barrier.TransTCC, "normal", []string{"try", "cancel"})
		runSequence(t, e, barrier.TransSaga, "saga", []string{"compensate"})
		tests := []struct {
			gid  string
			want []barrierRow
		}{
			{"null", []barrierRow{{"01", "cancel", "cancel", "tcc"}, {"01", "try", "cancel", "tcc"}}},
			{"normal", []barrierRow{{"01", "cancel", "cancel", "tcc"}, {"01", "try", "try", "tcc"}}},
			{"saga", []barrierRow{{"01", "action", "compensate", "saga"}, {"01", "compensate", "compensate", "saga"}}},
		}
		for _, tt := range tests {
			if diff := cmp.Diff(tt.want, e.barrierRows(t, tt.gid)); diff != "" {
				t.Errorf("%s: barrier rows (-want +got):\n%s", tt.gid, diff)
			}
		}
	})
}

// arrangements returns every distinct order of a multiset holding each of ops between 0
// and countMax times (the empty sequence left out).
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
			place(append([]int(nil), counts...), nil)
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

// TestOrderingsTCC runs every order of try, confirm and cancel, each absent, once or
// duplicated, against the model. (Confirm and cancel of one branch never both come from a
// correct coordinator; they are included because a participant must not rely on that.)
func TestOrderingsTCC(t *testing.T) {
	t.Parallel()
	seqs := arrangements([]string{barrier.OpTry, barrier.OpConfirm, barrier.OpCancel}, 2)
	if len(seqs) != 270 {
		t.Fatalf("%d sequences, want 270: the generator is broken", len(seqs))
	}
	engines(t, func(t *testing.T, e env) {
		for i, seq := range seqs {
			runSequence(t, e, barrier.TransTCC, fmt.Sprintf("tcc-%03d", i), seq)
		}
	})
}

// TestOrderingsSaga runs every order of action and compensate, each up to three times.
func TestOrderingsSaga(t *testing.T) {
	t.Parallel()
	seqs := arrangements([]string{barrier.OpAction, barrier.OpCompensate}, 3)
	if len(seqs) != 68 {
		t.Fatalf("%d sequences, want 68: the generator is broken", len(seqs))
	}
	engines(t, func(t *testing.T, e env) {
		for i, seq := range seqs {
			runSequence(t, e, barrier.TransSaga, fmt.Sprintf("saga-%03d", i), seq)
		}
	})
}

// TestCallRollsBack: when the business function fails, the caller's rollback removes the
// barrier row with its effects, and a retry runs the function again. Call itself never
// commits or rolls back.
func TestCallRollsBack(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, e env) {
		ctx := context.Background()
		br := barrier.Branch{TransType: barrier.TransTCC, GID: "rb", BranchID: "01", Op: barrier.OpTry}
		tx, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var fnRan bool
		if got := classify(br.Call(ctx, tx, e.d, e.effect(br, true, &fnRan)), fnRan); got != failed {
			t.Fatalf("Call = %s, want %s", got, failed)
		}
		// Call left the transaction open: it can still be used, then rolled back.
		if _, err := tx.ExecContext(ctx, "SELECT 1"); err != nil {
			t.Fatalf("transaction unusable after Call: %v", err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if rows := e.barrierRows(t, "rb"); len(rows) != 0 {
			t.Errorf("barrier rows after rollback: %v, want none", rows)
		}
		if got := e.call(br, false); got != ran {
			t.Errorf("retry = %s, want %s", got, ran)
		}
		if diff := cmp.Diff(map[string]map[string]int{"01": {"try": 1}}, e.ledger(t, "rb")); diff != "" {
			t.Errorf("ledger (-want +got):\n%s", diff)
		}
	})
}

// TestCallDBPanic: a panicking business function rolls its transaction back, barrier
// row included, and the panic reaches the caller.
func TestCallDBPanic(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, e env) {
		br := barrier.Branch{TransType: barrier.TransSaga, GID: "panic", BranchID: "01", Op: barrier.OpAction}
		func() {
			defer func() {
				if r := recover(); r != "boom" {
					t.Errorf("recovered %v, want boom", r)
				}
			}()
			var fnRan bool
			barrier.CallDB(context.Background(), e.db, e.d, br, func(tx *sql.Tx) error {
				_ = e.effect(br, false, &fnRan)(tx)
				panic("boom")
			})
		}()
		if rows := e.barrierRows(t, "panic"); len(rows) != 0 {
			t.Errorf("barrier rows after panic: %v, want none", rows)
		}
		if l := e.ledger(t, "panic"); len(l) != 0 {
			t.Errorf("ledger after panic: %v, want empty", l)
		}
		if got := e.call(br, false); got != ran {
			t.Errorf("retry = %s, want %s", got, ran)
		}
	})
}

// TestMigrate: Migrate runs again without harm, and a table of another name (qualified,
// on PostgreSQL by a schema) works alone.
func TestMigrate(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, e env) {
		ctx := context.Background()
		if err := barrier.Migrate(ctx, e.db, e.d); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		other := barrier.Dialect{Engine: e.d.Engine, Table: "main.other_barrier"}
		if e.d.Engine == barrier.Postgres {
			var schema string
			if err := e.db.QueryRow("SELECT current_schema()").Scan(&schema); err != nil {
				t.Fatal(err)
			}
			other.Table = schema + ".other_barrier"
		}
		if err := barrier.Migrate(ctx, e.db, other); err != nil {
			t.Fatal(err)
		}
		br := barrier.Branch{TransType: barrier.TransTCC, GID: "g", BranchID: "01", Op: barrier.OpCancel}
		unexpected := func(*sql.Tx) error {
			t.Error("business function ran for a null compensation")
			return nil
		}
		for range 2 {
			if err := barrier.CallDB(ctx, e.db, other, br, unexpected); err != nil {
				t.Fatalf("null compensation through %s: %v", other.Table, err)
			}
		}
		var n int
		if err := e.db.QueryRow("SELECT count(*) FROM " + other.Table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("%s holds %d rows, want 2 (try and cancel)", other.Table, n)
		}
		if rows := e.barrierRows(t, "g"); len(rows) != 0 {
			t.Errorf("default table holds %v, want nothing", rows)
		}
	})
}

// TestConstraintsPairValidation: the table's constraints reject what Validate rejects, so
// a row that bypassed the code (or a drifted check) cannot land.
func TestConstraintsPairValidation(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, e env) {
		insert := e.rebind("INSERT INTO " + barrier.DefaultTable + " (trans_type, gid, branch_id, op, reason) VALUES (?, ?, ?, ?, ?)")
		bad := [][]any{
			{"xa", "g", "b", "try", "try"},
			{"tcc", "g", "b", "prepare", "try"},
			{"tcc", "g", "b", "try", "rollback"},
			{"tcc", "", "b", "try", "try"},
			{"tcc", "g", "", "try", "try"},
			{"tcc", strings.Repeat("g", barrier.GIDBytesMax+1), "b", "try", "try"},
			{"tcc", "g", strings.Repeat("b", barrier.BranchIDBytesMax+1), "try", "try"},
		}
		for _, args := range bad {
			if _, err := e.db.Exec(insert, args...); err == nil {
				t.Errorf("insert %q succeeded, want a constraint violation", args)
			}
		}
		if _, err := e.db.Exec(insert, "tcc", strings.Repeat("g", barrier.GIDBytesMax), "b", "try", "try"); err != nil {
			t.Errorf("insert of a %d-byte gid: %v", barrier.GIDBytesMax, err)
		}
	})
}
