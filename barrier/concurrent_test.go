package barrier_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore/barrier"
)

// resendsMax bounds how often the tests' coordinator resends a request that failed with a
// retryable error (HTTP 500 in DTM's terms).
const resendsMax = 10

// callResending sends one op the way a coordinator does: again after a retryable error,
// until it succeeds or fails for good. before runs inside the business function, first.
func (e env) callResending(t *testing.T, br barrier.Branch, before func()) (outcome, int) {
	for resends := 0; ; resends++ {
		var fnRan bool
		effect := e.effect(br, false, &fnRan)
		err := barrier.CallDB(context.Background(), e.db, e.d, br, func(tx *sql.Tx) error {
			before()
			return effect(tx)
		})
		if err == nil || errors.Is(err, barrier.ErrFailure) || resends == resendsMax {
			return classify(err, fnRan), resends
		}
		t.Logf("%s: retryable error, resending: %v", br, err)
	}
}

// TestConcurrentTryCancel sends try and cancel of many branches at the same moment, as a
// coordinator does when a try times out while still in flight, with random delays so
// both orders occur. Whatever the order, each branch must end balanced: reserved and
// released, or neither, and the outcomes must say which.
func TestConcurrentTryCancel(t *testing.T) {
	t.Parallel()
	const branches = 200
	engines(t, func(t *testing.T, e env) {
		type result struct{ try, cancel outcome }
		results := make([]result, branches)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var resendsMu sync.Mutex
		resendsTotal := 0
		send := func(br barrier.Branch, got *outcome) {
			defer wg.Done()
			<-start
			time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
			// The try holds its barrier row a little while before reserving, widening the
			// window in which the cancel waits on it.
			hold := func() { time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) }
			var resends int
			*got, resends = e.callResending(t, br, hold)
			resendsMu.Lock()
			resendsTotal += resends
			resendsMu.Unlock()
		}
		for i := range branches {
			try := barrier.Branch{TransType: barrier.TransTCC, GID: "race", BranchID: fmt.Sprintf("%03d", i), Op: barrier.OpTry}
			cancel := try
			cancel.Op = barrier.OpCancel
			wg.Add(2)
			go send(try, &results[i].try)
			go send(cancel, &results[i].cancel)
		}
		close(start)
		wg.Wait()

		ledger := e.ledger(t, "race")
		tryFirst, cancelFirst := 0, 0
		for i, r := range results {
			branch := fmt.Sprintf("%03d", i)
			var want map[string]int
			switch r {
			case result{try: ran, cancel: ran}:
				tryFirst++
				want = map[string]int{"try": 1, "cancel": 1}
			case result{try: hanging, cancel: skipped}:
				cancelFirst++
			default:
				t.Errorf("branch %s: try %s, cancel %s; want try ran and cancel ran, or cancel skipped and try hanging", branch, r.try, r.cancel)
				continue
			}
			if diff := cmp.Diff(want, ledger[branch]); diff != "" {
				t.Errorf("branch %s (try %s, cancel %s): ledger (-want +got):\n%s", branch, r.try, r.cancel, diff)
			}
		}
		checkNoHanging(t, e, "race")
		available, reserved, sold := e.stock(t)
		if available != stockInitial || reserved != 0 || sold != 0 {
			t.Errorf("stock available %d reserved %d sold %d, want %d 0 0: reservations and releases do not balance",
				available, reserved, sold, stockInitial)
		}
		t.Logf("%d branches: try first %d, cancel first %d, %d resends", branches, tryFirst, cancelFirst, resendsTotal)
	})
}

// blockedFor is how long a request must stay blocked behind another's open transaction
// for the test to believe it waits on it. Finishing sooner is a bug: it decided without
// seeing the other's outcome.
const blockedFor = 200 * time.Millisecond

// TestInterleavings forces each overlap of try and cancel: the first op's transaction is
// held open, the second op is sent and must wait for it, then the first commits or rolls
// back and the second decides on what it finds.
func TestInterleavings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		first      string
		commit     bool
		wantFirst  outcome // the first op's Call, before its commit or rollback
		wantSecond outcome
		then       []string // ops sent afterwards, one by one
		wantThen   []outcome
		wantLedger map[string]int
	}{
		{
			name: "try commits while cancel waits", first: barrier.OpTry, commit: true,
			wantFirst: ran, wantSecond: ran,
			then: []string{"try", "cancel"}, wantThen: []outcome{skipped, skipped},
			wantLedger: map[string]int{"try": 1, "cancel": 1},
		},
		{
			name: "cancel commits while try waits", first: barrier.OpCancel, commit: true,
			wantFirst: skipped, wantSecond: hanging,
			then: []string{"try", "cancel"}, wantThen: []outcome{hanging, skipped},
		},
		{
			name: "try rolls back while cancel waits", first: barrier.OpTry, commit: false,
			wantFirst: ran, wantSecond: skipped,
			then: []string{"try", "cancel"}, wantThen: []outcome{hanging, skipped},
		},
		{
			name: "cancel rolls back while try waits", first: barrier.OpCancel, commit: false,
			wantFirst: skipped, wantSecond: ran,
			then: []string{"cancel", "try"}, wantThen: []outcome{ran, skipped},
			wantLedger: map[string]int{"try": 1, "cancel": 1},
		},
	}
	engines(t, func(t *testing.T, e env) {
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := context.Background()
				gid := fmt.Sprintf("interleave-%d", i)
				first := barrier.Branch{TransType: barrier.TransTCC, GID: gid, BranchID: "01", Op: tt.first}
				second := first
				second.Op = map[string]string{barrier.OpTry: barrier.OpCancel, barrier.OpCancel: barrier.OpTry}[tt.first]

				tx, err := e.db.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback()
				var fnRan bool
				if got := classify(first.Call(ctx, tx, e.d, e.effect(first, false, &fnRan)), fnRan); got != tt.wantFirst {
					t.Fatalf("first %s = %s, want %s", first.Op, got, tt.wantFirst)
				}
				done := make(chan outcome, 1)
				go func() { done <- e.call(second, false) }()
				select {
				case got := <-done:
					t.Fatalf("%s finished (%s) while %s's transaction was open", second.Op, got, first.Op)
				case <-time.After(blockedFor):
				}
				if tt.commit {
					err = tx.Commit()
				} else {
					err = tx.Rollback()
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := <-done; got != tt.wantSecond {
					t.Errorf("second %s = %s, want %s", second.Op, got, tt.wantSecond)
				}
				var gotThen []outcome
				for _, op := range tt.then {
					br := first
					br.Op = op
					gotThen = append(gotThen, e.call(br, false))
				}
				if diff := cmp.Diff(tt.wantThen, gotThen); diff != "" {
					t.Errorf("later %v (-want +got):\n%s", tt.then, diff)
				}
				if diff := cmp.Diff(tt.wantLedger, e.ledger(t, gid)["01"]); diff != "" {
					t.Errorf("ledger (-want +got):\n%s", diff)
				}
				checkNoHanging(t, e, gid)
			})
		}
	})
}
