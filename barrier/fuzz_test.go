package barrier_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"ordercore/barrier"
)

// fuzzStepsMax bounds the ops one fuzz input sends; longer inputs are cut.
const fuzzStepsMax = 64

// fuzzStep decodes one input byte: bits 0-1 pick one of four branches (0 and 1 TCC, 2 and
// 3 saga), bits 2-6 the op of that branch's type, bit 7 makes its business function fail.
func fuzzStep(c byte) (branch int, transType, op string, fail bool) {
	branch = int(c & 3)
	transType, ops := barrier.TransTCC, []string{barrier.OpTry, barrier.OpConfirm, barrier.OpCancel}
	if branch >= 2 {
		transType, ops = barrier.TransSaga, []string{barrier.OpAction, barrier.OpCompensate}
	}
	return branch, transType, ops[int(c>>2&0x1f)%len(ops)], c&0x80 != 0
}

// FuzzOrdering sends random sequences of ops, some failing, to a few branches of one
// global transaction on SQLite, and compares every outcome and the final ledger with the
// model, then checks no reservation hangs.
func FuzzOrdering(f *testing.F) {
	e := env{db: openSQLite(f, f.TempDir()), d: barrier.Dialect{Engine: barrier.SQLite}}
	e.migrate(f)
	// Byte values: TCC try 0, confirm 4, cancel 8 (branch 0; +1 for branch 1); saga action
	// 2, compensate 6 (branch 2; +1 for branch 3); +0x80 fails.
	f.Add([]byte{0, 4})                          // commit
	f.Add([]byte{8, 0, 8, 0})                    // null compensation, hanging try
	f.Add([]byte{0x80, 8, 0})                    // failed try, then cancel, late try
	f.Add([]byte{0, 0x88, 8, 8, 0})              // failed cancel retried
	f.Add([]byte{6, 2, 3, 7, 7, 3})              // saga both ways
	f.Add([]byte{0, 1, 9, 4, 8, 5, 0x82, 6, 2})  // branches interleaved
	f.Add([]byte{0x84, 4, 0x80, 0, 0x86, 2, 10}) // failures everywhere
	var inputs atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzStepsMax {
			data = data[:fuzzStepsMax]
		}
		gid := fmt.Sprintf("fuzz-%d", inputs.Add(1))
		models := map[string]*model{}
		for i, c := range data {
			branch, transType, op, fail := fuzzStep(c)
			br := barrier.Branch{TransType: transType, GID: gid, BranchID: fmt.Sprint(branch), Op: op}
			if models[br.BranchID] == nil {
				models[br.BranchID] = newModel()
			}
			want := models[br.BranchID].apply(op, fail)
			if got := e.call(br, fail); got != want {
				t.Fatalf("step %d (%s, fail %v): got %s, want %s; input %v", i, br, fail, got, want, data)
			}
		}
		wantLedger := map[string]map[string]int{}
		for branch, m := range models {
			if l := m.ledger(); len(l) > 0 {
				wantLedger[branch] = l
			}
		}
		if diff := cmp.Diff(wantLedger, e.ledger(t, gid)); diff != "" {
			t.Errorf("ledger (-model +database):\n%s", diff)
		}
		checkNoHanging(t, e, gid)
	})
}
