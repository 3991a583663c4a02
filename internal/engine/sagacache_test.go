package engine_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/saga"
	"ordercore/sqlite"
)

func twoStepSaga(gid string) ordercore.Saga {
	return ordercore.Saga{GID: gid, Kind: ordercore.SagaKindSaga, Steps: []ordercore.SagaStep{
		{Name: "a", Action: ordercore.SagaCall{URL: "http://p.test/a"}, Compensate: &ordercore.SagaCall{URL: "http://p.test/a-undo"}},
		{Name: "b", Action: ordercore.SagaCall{URL: "http://p.test/b", Payload: json.RawMessage(`{"n":1}`)}}}}
}

// TestSagaOutcomesSeeEveryWrite: the committer applies a saga's outcomes to the saga as
// stored, whoever wrote it last: a change written by another instance (straight to the
// store) is seen, and a batch that was rolled back after changing a saga in memory leaves
// no trace in what the next batch starts from.
func TestSagaOutcomesSeeEveryWrite(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "cache.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	store := &failingStore{DB: db}
	clock := &manualClock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	eng := engine.New(store, clock, engine.Config{})
	t.Cleanup(func() { eng.Close(); db.Close() })
	ctx := context.Background()

	submitted, err := eng.Submit(ctx, engine.SubmitSaga{Saga: twoStepSaga("g-1"), Hold: saga.ClaimHold}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := submitted.Value.(ordercore.Saga)
	record := func(s ordercore.Saga, step int) (saga.Recorded, error) {
		return eng.RecordSaga(ctx, saga.Recording{GID: s.GID, Version: s.Version, Call: saga.Call{Step: step, Op: saga.OpAction}, Outcome: saga.OutcomeOK})
	}

	// A batch that fails after applying the outcome in memory.
	store.fail.Store(true)
	if _, err := record(s, 0); err == nil {
		t.Fatal("a batch whose Apply failed was answered as committed")
	}
	store.fail.Store(false)
	r, err := record(s, 0)
	if err != nil || !r.Applied {
		t.Fatalf("the outcome after a rolled-back batch: applied %v, %v (the rolled-back change leaked into the next batch)", r.Applied, err)
	}
	if r.Saga.Steps[0].Status != ordercore.StepSucceeded || r.Saga.Steps[0].Attempts != 0 {
		t.Fatalf("step a after one success: %+v", r.Saga.Steps[0])
	}

	// Another instance changes the saga behind this engine's back.
	stored, err := db.Saga(ctx, "g-1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(stored, r.Saga); diff != "" {
		t.Fatalf("the engine's answer and the stored saga differ (-stored +answered):\n%s", diff)
	}
	elsewhere := stored
	elsewhere.Steps = append([]ordercore.SagaStep(nil), stored.Steps...)
	elsewhere.Steps[1].Action.Payload = json.RawMessage(`{"n":2}`)
	elsewhere.Version, elsewhere.UpdatedAt = stored.Version+1, stored.UpdatedAt.Add(time.Millisecond)
	err = db.Write(ctx, func(tx ordercore.WriteTx) error {
		return tx.Apply(ctx, &ordercore.Changeset{SagaChanges: []ordercore.SagaChange{{Saga: elsewhere, FromVersion: stored.Version}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := record(stored, 1); err != nil || r.Applied {
		t.Fatalf("an outcome for the version before the other instance's change: applied %v, %v; want dropped", r.Applied, err)
	}
	r, err = record(elsewhere, 1)
	if err != nil || !r.Applied {
		t.Fatalf("the outcome for the current version: applied %v, %v", r.Applied, err)
	}
	if r.Saga.Status != ordercore.SagaCompleted || string(r.Saga.Steps[1].Action.Payload) != `{"n":2}` {
		t.Fatalf("after the last step: %s with step b's payload %s, want completed keeping the other instance's payload", r.Saga.Status, r.Saga.Steps[1].Action.Payload)
	}
	final, err := db.Saga(ctx, "g-1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(final, r.Saga); diff != "" {
		t.Fatalf("the engine's answer and the stored saga differ (-stored +answered):\n%s", diff)
	}
}
