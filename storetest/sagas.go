package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
)

// The saga half of the suite: a saga, steps and policy included, comes back from every read
// exactly as written; the claim takes only due sagas, earliest first, once per claim
// period; and the database refuses a duplicate gid, a stale version and a row that breaks
// the table's rules, keeping nothing of the batch.

// sagaTests are registered by Run beside the order and payment tests.
func sagaTests() []storeTest {
	return []storeTest{
		{"SagaRoundTrip", testSagaRoundTrip},
		{"SagaDuplicateGIDRefused", testSagaDuplicate},
		{"SagaVersionGuard", testSagaVersionGuard},
		{"SagaChangesInBulk", testSagaChangesInBulk},
		{"SagaCheckConstraints", testSagaChecks},
		{"SagaClaim", testSagaClaim},
		{"SagaClaimRolledBack", testSagaClaimRolledBack},
		{"SagaClaimHeldLonger", testSagaClaimHeldLonger},
		{"SagaList", testSagaList},
		{"SagaCounts", testSagaCounts},
	}
}

// newSaga returns a saga of one step with the status, created at t0, due at next (zero:
// not due).
func newSaga(gid string, kind ordercore.SagaKind, status ordercore.SagaStatus, next time.Time) ordercore.Saga {
	return ordercore.Saga{GID: gid, Kind: kind, Status: status, NextRunAt: next, Version: 1, CreatedAt: t0, UpdatedAt: t0,
		Steps:  []ordercore.SagaStep{{Name: "reserve", Action: ordercore.SagaCall{Local: "reserve"}, Status: ordercore.StepPending}},
		Policy: ordercore.SagaPolicy{StepTimeout: 10 * time.Second, RetriesMax: 5, BackoffMin: 200 * time.Millisecond, BackoffMax: time.Minute, CompensateAttemptsMax: 1440}}
}

// fullSagas returns sagas that between them set every field of ordercore.Saga (some
// fields exclude each other, as NextRunAt and DeadFrom do).
func fullSagas() []ordercore.Saga {
	running := newSaga("gid-running", ordercore.SagaKindSaga, ordercore.SagaRunning, t0.Add(time.Minute))
	running.OrderID, running.Deadline, running.Reason = id(1), t0.Add(time.Hour), "retrying step 1"
	running.Version, running.UpdatedAt = 3, t0.Add(30*time.Second)
	running.Policy = ordercore.SagaPolicy{StepTimeout: 3 * time.Second, RetriesMax: 7, BackoffMin: 150 * time.Millisecond, BackoffMax: 20 * time.Second, CompensateAttemptsMax: 99}
	running.Steps = []ordercore.SagaStep{
		{Name: "charge", Action: ordercore.SagaCall{URL: "https://pay.example/charge", Payload: []byte(`{"amount":1000,"note":"a \"quoted\" word"}`)},
			Compensate: &ordercore.SagaCall{URL: "https://pay.example/refund", Payload: []byte(`{"amount":1000}`)},
			Status:     ordercore.StepSucceeded, Called: true},
		{Name: "ship", Action: ordercore.SagaCall{Local: "order.ship", Payload: []byte(`["x",1,null]`)},
			Compensate: &ordercore.SagaCall{Local: "order.unship"},
			Status:     ordercore.StepPending, Attempts: 2, Called: true, LastError: "503 from ship"},
		{Name: "notify", Action: ordercore.SagaCall{URL: "https://mail.example/send"}, Status: ordercore.StepPending},
	}
	dead := newSaga("gid-tcc-dead", ordercore.SagaKindTCC, ordercore.SagaDeadLetter, time.Time{})
	dead.DeadFrom, dead.Reason, dead.Deadline = ordercore.SagaConfirming, "step 0 (stock) confirm: no success after 1440 attempts", t0.Add(time.Hour)
	dead.Steps = []ordercore.SagaStep{{Name: "stock",
		Action:     ordercore.SagaCall{URL: "https://stock.example/try"},
		Confirm:    &ordercore.SagaCall{URL: "https://stock.example/confirm", Payload: []byte(`{}`)},
		Compensate: &ordercore.SagaCall{URL: "https://stock.example/cancel"},
		Status:     ordercore.StepSucceeded, Attempts: 1440, Called: true, LastError: "timeout"}}
	empty := newSaga("gid-empty", ordercore.SagaKindSaga, ordercore.SagaCompleted, time.Time{})
	empty.Steps = nil // a saga of no steps completes at once
	return []ordercore.Saga{running, dead, empty}
}

// requireEveryField fails the test unless each field of Saga is set in one of sagas: a
// field added to Saga must be added to the fixtures (and so to the stores' columns).
func requireEveryField(t *testing.T, sagas []ordercore.Saga) {
	t.Helper()
	typ := reflect.TypeFor[ordercore.Saga]()
	for i := range typ.NumField() {
		if !slices.ContainsFunc(sagas, func(s ordercore.Saga) bool { return !reflect.ValueOf(s).Field(i).IsZero() }) {
			t.Errorf("no fixture sets Saga.%s: set it, and store it", typ.Field(i).Name)
		}
	}
}

func gids(ss []ordercore.Saga) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.GID
	}
	return out
}

func mustSaga(t *testing.T, s Store, gid string) ordercore.Saga {
	t.Helper()
	got, err := s.Saga(context.Background(), gid)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// loadSagas runs the write transaction's load.
func loadSagas(t *testing.T, s Store, gids ...string) map[string]ordercore.Saga {
	t.Helper()
	var got map[string]ordercore.Saga
	inTx(t, s, func(tx ordercore.WriteTx) error {
		var err error
		got, err = tx.Sagas(context.Background(), gids)
		return err
	})
	return got
}

// sagaVersions runs the write transaction's version read.
func sagaVersions(t *testing.T, s Store, gids ...string) map[string]int64 {
	t.Helper()
	var got map[string]int64
	inTx(t, s, func(tx ordercore.WriteTx) error {
		var err error
		got, err = tx.SagaVersions(context.Background(), gids)
		return err
	})
	return got
}

// testSagaRoundTrip: sagas come back identical through the write transaction's load, the
// reader and the dump, before and after a change, and the version read reports their versions.
func testSagaRoundTrip(t *testing.T, s Store) {
	sagas := fullSagas()
	requireEveryField(t, sagas)
	mustWrite(t, s, &ordercore.Changeset{NewSagas: sagas})
	check := func(when string, sagas []ordercore.Saga) {
		t.Helper()
		want := map[string]ordercore.Saga{}
		for _, sg := range sagas {
			want[sg.GID] = sg
			if diff := cmp.Diff(sg, mustSaga(t, s, sg.GID)); diff != "" {
				t.Errorf("%s: Saga(%s) (-wrote +read):\n%s", when, sg.GID, diff)
			}
		}
		if diff := cmp.Diff(want, loadSagas(t, s, append(gids(sagas), "gid-missing")...)); diff != "" {
			t.Errorf("%s: tx.Sagas (-wrote +loaded):\n%s", when, diff)
		}
		wantVersions := map[string]int64{}
		for _, sg := range sagas {
			wantVersions[sg.GID] = sg.Version
		}
		if diff := cmp.Diff(wantVersions, sagaVersions(t, s, append(gids(sagas), "gid-missing")...)); diff != "" {
			t.Errorf("%s: tx.SagaVersions (-wrote +read):\n%s", when, diff)
		}
		sorted := slices.Clone(sagas)
		slices.SortFunc(sorted, func(a, b ordercore.Saga) int { return strings.Compare(a.GID, b.GID) })
		if diff := cmp.Diff(sorted, dump(t, s).Sagas); diff != "" {
			t.Errorf("%s: Dump's sagas, by gid (-wrote +dumped):\n%s", when, diff)
		}
	}
	check("after insert", sagas)
	if _, err := s.Saga(context.Background(), "gid-missing"); ordercore.ErrorCode(err) != ordercore.ENOTFOUND {
		t.Errorf("missing saga: %v, want not_found", err)
	}
	if got := loadSagas(t, s); len(got) != 0 {
		t.Errorf("tx.Sagas of no gids = %v", got)
	}
	if got := sagaVersions(t, s); len(got) != 0 {
		t.Errorf("tx.SagaVersions of no gids = %v", got)
	}

	// Every column that may change does: the running saga compensates, the dead one is
	// resumed by an operator.
	at := t0.Add(2 * time.Hour)
	running, dead := sagas[0], sagas[1]
	compensating := running
	compensating.Steps = slices.Clone(running.Steps)
	compensating.Steps[0].Status, compensating.Steps[1].Status, compensating.Steps[1].Attempts = ordercore.StepCompensated, ordercore.StepFailed, 5
	compensating.Status, compensating.Reason, compensating.OrderID = ordercore.SagaCompensating, "step 1 (ship) failed for good", id(2)
	compensating.Policy.RetriesMax, compensating.NextRunAt, compensating.Deadline = 9, at.Add(time.Second), time.Time{}
	compensating.Version, compensating.UpdatedAt = running.Version+1, at
	resumed := dead
	resumed.Status, resumed.DeadFrom, resumed.NextRunAt, resumed.Version, resumed.UpdatedAt = ordercore.SagaConfirming, "", at, dead.Version+1, at
	mustWrite(t, s, &ordercore.Changeset{SagaChanges: []ordercore.SagaChange{
		{Saga: compensating, FromVersion: running.Version}, {Saga: resumed, FromVersion: dead.Version}}})
	check("after change", []ordercore.Saga{compensating, resumed, sagas[2]})
}

// testSagaDuplicate: a gid that exists, or one twice in a batch, refuses the whole batch.
func testSagaDuplicate(t *testing.T, s Store) {
	first := newSaga("gid-1", ordercore.SagaKindSaga, ordercore.SagaRunning, t0)
	mustWrite(t, s, &ordercore.Changeset{NewSagas: []ordercore.Saga{first}})
	again := newSaga("gid-1", ordercore.SagaKindTCC, ordercore.SagaTrying, t0.Add(time.Hour))
	other := newSaga("gid-2", ordercore.SagaKindSaga, ordercore.SagaRunning, t0)
	refuses(t, s, "a saga whose gid exists", ordercore.Changeset{NewSagas: []ordercore.Saga{other, again}})
	refuses(t, s, "a batch with one gid twice", ordercore.Changeset{NewSagas: []ordercore.Saga{other, other}})
	if diff := cmp.Diff(first, mustSaga(t, s, "gid-1")); diff != "" {
		t.Errorf("the stored saga changed (-first +now):\n%s", diff)
	}
	if _, err := s.Saga(context.Background(), other.GID); ordercore.ErrorCode(err) != ordercore.ENOTFOUND {
		t.Errorf("a saga of a refused batch was written: %v", err)
	}
	mustWrite(t, s, &ordercore.Changeset{NewSagas: []ordercore.Saga{other}})
}

// testSagaVersionGuard: a change from a version that is no longer stored, of a saga that
// does not exist, or that rewrites what never changes (kind, creation) refuses the batch.
func testSagaVersionGuard(t *testing.T, s Store) {
	sg := newSaga("gid-1", ordercore.SagaKindSaga, ordercore.SagaRunning, t0)
	mustWrite(t, s, &ordercore.Changeset{NewSagas: []ordercore.Saga{sg}})
	next := sg
	next.Status, next.NextRunAt, next.Version, next.UpdatedAt = ordercore.SagaCompleted, time.Time{}, 2, t0.Add(time.Minute)
	otherKind, otherCreation, missing := next, next, next
	otherKind.Kind = ordercore.SagaKindTCC
	otherCreation.CreatedAt = t0.Add(time.Second)
	missing.GID = "gid-missing"
	for _, bad := range []struct {
		what string
		ch   ordercore.SagaChange
	}{
		{"a change from a stale version", ordercore.SagaChange{Saga: next, FromVersion: 7}},
		{"a change of a saga that does not exist", ordercore.SagaChange{Saga: missing, FromVersion: 1}},
		{"a change of a saga's kind", ordercore.SagaChange{Saga: otherKind, FromVersion: 1}},
		{"a change of a saga's creation time", ordercore.SagaChange{Saga: otherCreation, FromVersion: 1}},
	} {
		refuses(t, s, bad.what, ordercore.Changeset{
			NewSagas:    []ordercore.Saga{newSaga("gid-side", ordercore.SagaKindSaga, ordercore.SagaRunning, t0)},
			SagaChanges: []ordercore.SagaChange{bad.ch}})
	}
	mustWrite(t, s, &ordercore.Changeset{SagaChanges: []ordercore.SagaChange{{Saga: next, FromVersion: 1}}})
	if diff := cmp.Diff(next, mustSaga(t, s, sg.GID)); diff != "" {
		t.Errorf("after the valid change (-want +got):\n%s", diff)
	}
	refuses(t, s, "the same change applied twice", ordercore.Changeset{SagaChanges: []ordercore.SagaChange{{Saga: next, FromVersion: 1}}})
}

// testSagaChangesInBulk: a batch changing hundreds of sagas at once (more than one
// statement's worth of rows) writes every change, and one stale change among them refuses
// the whole batch, wherever it falls.
func testSagaChangesInBulk(t *testing.T, s Store) {
	const n = 600
	var sagas []ordercore.Saga
	for i := range n {
		sagas = append(sagas, newSaga(fmt.Sprintf("bulk-%03d", i), ordercore.SagaKindSaga, ordercore.SagaRunning, t0))
	}
	mustWrite(t, s, &ordercore.Changeset{NewSagas: sagas})
	changed := func(sg ordercore.Saga, i int) ordercore.Saga {
		sg.Steps = slices.Clone(sg.Steps)
		sg.Steps[0].Attempts, sg.Steps[0].LastError = i%7+1, fmt.Sprint("attempt of ", sg.GID)
		sg.NextRunAt, sg.Version, sg.UpdatedAt = t0.Add(time.Duration(i)*time.Second), sg.Version+1, t0.Add(time.Minute)
		if i%3 == 0 {
			sg.Status, sg.NextRunAt = ordercore.SagaCompleted, time.Time{}
		}
		return sg
	}
	for _, stale := range []int{0, 63, 64, 511, 512, n - 1} {
		var chs []ordercore.SagaChange
		for i, sg := range sagas {
			from := sg.Version
			if i == stale {
				from = sg.Version + 5
			}
			chs = append(chs, ordercore.SagaChange{Saga: changed(sg, i), FromVersion: from})
		}
		refuses(t, s, fmt.Sprintf("%d saga changes, number %d from a stale version", n, stale), ordercore.Changeset{SagaChanges: chs})
	}
	var chs []ordercore.SagaChange
	var want []ordercore.Saga
	for i, sg := range sagas {
		next := changed(sg, i)
		chs, want = append(chs, ordercore.SagaChange{Saga: next, FromVersion: sg.Version}), append(want, next)
	}
	mustWrite(t, s, &ordercore.Changeset{SagaChanges: chs})
	if diff := cmp.Diff(want, dump(t, s).Sagas); diff != "" {
		t.Errorf("after %d changes in one batch (-want +stored):\n%s", n, diff)
	}
}

// testSagaChecks: rows that break the table's rules are refused even if the code above the
// store let them through: an ended or dead_letter saga that is due, a dead_letter saga
// that does not know what to resume (or one that is not dead and does), an unknown kind
// or status, a version below 1, a payload that is not JSON.
func testSagaChecks(t *testing.T, s Store) {
	due := t0.Add(time.Minute)
	variant := func(gid string, f func(*ordercore.Saga)) ordercore.Saga {
		sg := newSaga(gid, ordercore.SagaKindSaga, ordercore.SagaRunning, due)
		f(&sg)
		return sg
	}
	bad := []ordercore.Saga{
		variant("completed-due", func(sg *ordercore.Saga) { sg.Status = ordercore.SagaCompleted }),
		variant("compensated-due", func(sg *ordercore.Saga) { sg.Status = ordercore.SagaCompensated }),
		variant("dead-due", func(sg *ordercore.Saga) {
			sg.Status, sg.DeadFrom = ordercore.SagaDeadLetter, ordercore.SagaCompensating
		}),
		variant("dead-from-nowhere", func(sg *ordercore.Saga) { sg.Status, sg.NextRunAt = ordercore.SagaDeadLetter, time.Time{} }),
		variant("dead-from-running", func(sg *ordercore.Saga) {
			sg.Status, sg.DeadFrom, sg.NextRunAt = ordercore.SagaDeadLetter, ordercore.SagaRunning, time.Time{}
		}),
		variant("alive-with-dead-from", func(sg *ordercore.Saga) { sg.DeadFrom = ordercore.SagaCompensating }),
		variant("kind-xa", func(sg *ordercore.Saga) { sg.Kind = "xa" }),
		variant("status-lost", func(sg *ordercore.Saga) { sg.Status = "lost" }),
		variant("version-0", func(sg *ordercore.Saga) { sg.Version = 0 }),
		variant("payload-not-json", func(sg *ordercore.Saga) { sg.Steps[0].Action.Payload = []byte(`{"a":`) }),
	}
	for _, sg := range bad {
		refuses(t, s, "new saga "+sg.GID, ordercore.Changeset{NewSagas: []ordercore.Saga{sg}})
	}
	// The same rules hold for a change.
	ok := variant("ok", func(*ordercore.Saga) {})
	mustWrite(t, s, &ordercore.Changeset{NewSagas: []ordercore.Saga{ok}})
	done := ok
	done.Status, done.Version, done.UpdatedAt = ordercore.SagaCompleted, 2, due
	refuses(t, s, "a change to completed that stays due", ordercore.Changeset{SagaChanges: []ordercore.SagaChange{{Saga: done, FromVersion: 1}}})
	done.NextRunAt = time.Time{}
	mustWrite(t, s, &ordercore.Changeset{SagaChanges: []ordercore.SagaChange{{Saga: done, FromVersion: 1}}})
}

func claim(t *testing.T, s Store, now, until time.Time, limit int) []ordercore.Saga {
	t.Helper()
	var got []ordercore.Saga
	inTx(t, s, func(tx ordercore.WriteTx) error {
		var err error
		got, err = tx.ClaimSagas(context.Background(), now, until, limit)
		return err
	})
	return got
}

// claimed is sg as a claim at now until until leaves it.
func claimed(sg ordercore.Saga, now, until time.Time) ordercore.Saga {
	sg.NextRunAt, sg.Version, sg.UpdatedAt = until, sg.Version+1, now
	return sg
}

// claimFixture writes sagas due at various times around now, and some never due.
func claimFixture(t *testing.T, s Store, now time.Time) (due, notDue []ordercore.Saga) {
	at := func(gid string, next time.Time) ordercore.Saga {
		return newSaga(gid, ordercore.SagaKindSaga, ordercore.SagaRunning, next)
	}
	early := at("c-early", now.Add(-5*time.Minute))
	tieB := at("c-tie-b", now.Add(-time.Minute)) // ties on next_run_at go by gid
	tieA := at("c-tie-a", now.Add(-time.Minute))
	atNow := at("c-at-now", now)
	future := at("c-future", now.Add(time.Microsecond))
	idle := at("c-idle", time.Time{}) // running, but waiting on nothing
	done := newSaga("c-done", ordercore.SagaKindSaga, ordercore.SagaCompleted, time.Time{})
	prepared := newSaga("c-prepared", ordercore.SagaKindTCC, ordercore.SagaPrepared, now.Add(time.Hour))
	mustWrite(t, s, &ordercore.Changeset{NewSagas: []ordercore.Saga{atNow, done, tieB, future, early, idle, tieA, prepared}})
	return []ordercore.Saga{early, tieA, tieB, atNow}, []ordercore.Saga{future, idle, done, prepared}
}

// testSagaClaim: a claim takes only due sagas, earliest first, at most limit, and moves
// them to until, where another claim at the same time no longer sees them; once until has
// come they are due again.
func testSagaClaim(t *testing.T, s Store) {
	now := t0.Add(10 * time.Minute)
	until := now.Add(30 * time.Second)
	due, notDue := claimFixture(t, s, now)
	var want []ordercore.Saga
	for _, sg := range due {
		want = append(want, claimed(sg, now, until))
	}

	first := claim(t, s, now, until, 3)
	if diff := cmp.Diff(want[:3], first); diff != "" {
		t.Errorf("claim of 3, earliest first, as changed (-want +got):\n%s", diff)
	}
	for _, sg := range want[:3] {
		if diff := cmp.Diff(sg, mustSaga(t, s, sg.GID)); diff != "" {
			t.Errorf("saga %s after its claim committed (-want +got):\n%s", sg.GID, diff)
		}
	}
	if diff := cmp.Diff(want[3:], claim(t, s, now, until, 10)); diff != "" {
		t.Errorf("second claim at the same time, only what the first left (-want +got):\n%s", diff)
	}
	if got := claim(t, s, now, until, 10); len(got) != 0 {
		t.Errorf("third claim at the same time took %v, want none", gids(got))
	}
	for _, sg := range notDue {
		if diff := cmp.Diff(sg, mustSaga(t, s, sg.GID)); diff != "" {
			t.Errorf("saga %s, not due, changed (-was +now):\n%s", sg.GID, diff)
		}
	}

	// At until the claims have ended: the claimed sagas are due again, behind the one due
	// a microsecond after now, and a second claim by them is one more version.
	later := until.Add(time.Minute)
	again := claim(t, s, until, later, 10)
	wantGIDs := []string{"c-future", "c-at-now", "c-early", "c-tie-a", "c-tie-b"}
	if diff := cmp.Diff(wantGIDs, gids(again)); diff != "" {
		t.Errorf("claim at until, earliest first then by gid (-want +got):\n%s", diff)
	}
	for _, sg := range again {
		if sg.Version != 2+btoi(sg.GID != "c-future") || !sg.NextRunAt.Equal(later) || !sg.UpdatedAt.Equal(until) {
			t.Errorf("saga %s claimed again: version %d, next %v, updated %v", sg.GID, sg.Version, sg.NextRunAt, sg.UpdatedAt)
		}
	}
}

func btoi(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// testSagaClaimRolledBack: a claim is part of its transaction; if the transaction fails,
// the sagas are as they were and due as before.
func testSagaClaimRolledBack(t *testing.T, s Store) {
	now := t0.Add(10 * time.Minute)
	due, _ := claimFixture(t, s, now)
	boom := errors.New("boom")
	err := s.Write(context.Background(), func(tx ordercore.WriteTx) error {
		got, err := tx.ClaimSagas(context.Background(), now, now.Add(time.Minute), 10)
		if err != nil {
			return err
		}
		if len(got) != len(due) {
			t.Errorf("claim in the failing transaction took %v", gids(got))
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write = %v, want the function's error", err)
	}
	for _, sg := range due {
		if diff := cmp.Diff(sg, mustSaga(t, s, sg.GID)); diff != "" {
			t.Errorf("saga %s after a rolled-back claim (-was +now):\n%s", sg.GID, diff)
		}
	}
	if diff := cmp.Diff(gids(due), gids(claim(t, s, now, now.Add(time.Minute), 10))); diff != "" {
		t.Errorf("claim after the rollback (-want +got):\n%s", diff)
	}
}

// testSagaClaimHeldLonger: a claimed saga can be changed in the claim's transaction from
// the version the claim gave it, as the engine does to hold a saga whose step timeout is
// longer than the claim's hold; the commit keeps the change, and a claim before the
// longer hold runs out does not take the saga.
func testSagaClaimHeldLonger(t *testing.T, s Store) {
	now := t0.Add(10 * time.Minute)
	due, _ := claimFixture(t, s, now)
	longer := now.Add(5 * time.Minute)
	var want ordercore.Saga
	inTx(t, s, func(tx ordercore.WriteTx) error {
		got, err := tx.ClaimSagas(context.Background(), now, now.Add(time.Minute), 1)
		if err != nil || len(got) != 1 {
			t.Fatalf("claim of 1: %v %v", gids(got), err)
		}
		want = got[0]
		want.NextRunAt, want.Version = longer, want.Version+1
		return tx.Apply(context.Background(), &ordercore.Changeset{SagaChanges: []ordercore.SagaChange{{Saga: want, FromVersion: got[0].Version}}})
	})
	if want.GID != due[0].GID {
		t.Fatalf("claimed %s, want %s", want.GID, due[0].GID)
	}
	if diff := cmp.Diff(want, mustSaga(t, s, want.GID)); diff != "" {
		t.Errorf("saga held longer in its claim's transaction (-want +got):\n%s", diff)
	}
	for _, sg := range claim(t, s, now.Add(2*time.Minute), now.Add(3*time.Minute), 10) {
		if sg.GID == want.GID {
			t.Errorf("saga %s claimed again before its longer hold ran out", sg.GID)
		}
	}
}

// listFixture writes sagas created a minute apart, two of them at the same time (their
// order is by gid), in three statuses; it returns them newest first.
func listFixture(t *testing.T, s Store) []ordercore.Saga {
	statuses := []ordercore.SagaStatus{ordercore.SagaRunning, ordercore.SagaCompleted, ordercore.SagaCompensating}
	var sagas []ordercore.Saga
	for i := range 8 {
		st := statuses[i%3]
		next := t0
		if st.Final() {
			next = time.Time{}
		}
		sg := newSaga(fmt.Sprintf("l-%d", i), ordercore.SagaKindSaga, st, next)
		sg.CreatedAt = t0.Add(time.Duration(min(i, 6)) * time.Minute) // l-6 and l-7 tie
		sg.UpdatedAt = sg.CreatedAt
		sagas = append(sagas, sg)
	}
	mustWrite(t, s, &ordercore.Changeset{NewSagas: sagas})
	slices.Reverse(sagas)
	return sagas
}

// testSagaList: operators page through sagas newest first, all or by status; a cursor
// that names no saga is refused as one.
func testSagaList(t *testing.T, s Store) {
	ctx := context.Background()
	if got, err := s.ListSagas(ctx, "", "", 10); err != nil || len(got) != 0 {
		t.Errorf("ListSagas of an empty store = %v, %v", got, err)
	}
	newest := listFixture(t, s)
	page := func(status ordercore.SagaStatus, after string, limit int) []ordercore.Saga {
		var all []ordercore.Saga
		for range 20 {
			got, err := s.ListSagas(ctx, status, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > limit {
				t.Fatalf("ListSagas(%q, %q, %d) returned %d sagas", status, after, limit, len(got))
			}
			if len(got) == 0 {
				break
			}
			all = append(all, got...)
			after = got[len(got)-1].GID
		}
		return all
	}
	of := func(status ordercore.SagaStatus) []ordercore.Saga {
		var out []ordercore.Saga
		for _, sg := range newest {
			if sg.Status == status {
				out = append(out, sg)
			}
		}
		return out
	}
	for _, tc := range []struct {
		status ordercore.SagaStatus
		limit  int
		want   []ordercore.Saga
	}{
		{"", 3, newest},
		{"", 1, newest},
		{"", 100, newest},
		{ordercore.SagaRunning, 2, of(ordercore.SagaRunning)},
		{ordercore.SagaCompleted, 1, of(ordercore.SagaCompleted)},
		{ordercore.SagaCompensating, 2, of(ordercore.SagaCompensating)},
		{ordercore.SagaDeadLetter, 2, nil},
	} {
		if diff := cmp.Diff(tc.want, page(tc.status, "", tc.limit)); diff != "" {
			t.Errorf("ListSagas %q in pages of %d, newest first (-want +got):\n%s", tc.status, tc.limit, diff)
		}
	}
	if diff := cmp.Diff([]string{"l-7", "l-6", "l-5"}, gids(page("", "", 3)[:3])); diff != "" {
		t.Errorf("sagas created at the same time go by gid, descending (-want +got):\n%s", diff)
	}
	// A cursor of another status still marks a place in the order.
	if diff := cmp.Diff([]string{"l-4", "l-1"}, gids(page(ordercore.SagaCompleted, "l-6", 5))); diff != "" {
		t.Errorf("completed sagas after l-6 (running) (-want +got):\n%s", diff)
	}
	if _, err := s.ListSagas(ctx, "", "l-missing", 10); ordercore.ErrorCode(err) != ordercore.EInvalidCursor {
		t.Errorf("ListSagas after a gid that names no saga: %v, want %s", err, ordercore.EInvalidCursor)
	}
}

// testSagaCounts: the counts per status, for the console.
func testSagaCounts(t *testing.T, s Store) {
	ctx := context.Background()
	got, err := s.SagaCounts(ctx)
	if err != nil || len(got) != 0 {
		t.Errorf("SagaCounts of an empty store = %v, %v", got, err)
	}
	listFixture(t, s)
	dead := newSaga("dead", ordercore.SagaKindTCC, ordercore.SagaDeadLetter, time.Time{})
	dead.DeadFrom = ordercore.SagaConfirming
	mustWrite(t, s, &ordercore.Changeset{NewSagas: []ordercore.Saga{dead}})
	got, err = s.SagaCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[ordercore.SagaStatus]int64{ordercore.SagaRunning: 3, ordercore.SagaCompleted: 3, ordercore.SagaCompensating: 2, ordercore.SagaDeadLetter: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SagaCounts (-want +got):\n%s", diff)
	}
}
