package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"ordercore"
)

// TestClaimSagasSkipLocked: two instances claim due sagas at the same moment. The first
// holds its claim (and its row locks) open while the second claims; the second neither
// waits for the first nor takes any saga the first holds, but takes what the first left,
// so between them every due saga is claimed exactly once.
func TestClaimSagasSkipLocked(t *testing.T) {
	t.Parallel()
	const sagas, firstTakes = 6, 4
	// The second claim must be done well within this; were it blocked on the first's
	// locks, it would wait for as long as the first holds them (here: until it gives up).
	const secondClaimMax = 10 * time.Second
	ctx := context.Background()
	db := newDB(t)
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var due []ordercore.Saga
	for i := range sagas {
		due = append(due, ordercore.Saga{GID: fmt.Sprintf("gid-%d", i), Kind: ordercore.SagaKindSaga, Status: ordercore.SagaRunning,
			Steps:     []ordercore.SagaStep{{Name: "a", Action: ordercore.SagaCall{Local: "a"}, Status: ordercore.StepPending}},
			NextRunAt: at.Add(time.Duration(i) * time.Second), Version: 1, CreatedAt: at, UpdatedAt: at})
	}
	if err := db.Write(ctx, func(tx ordercore.WriteTx) error {
		return tx.Apply(ctx, &ordercore.Changeset{NewSagas: due})
	}); err != nil {
		t.Fatal(err)
	}
	now, until := at.Add(time.Hour), at.Add(time.Hour+time.Minute)

	holding, release := make(chan []ordercore.Saga), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- db.Write(ctx, func(tx ordercore.WriteTx) error {
			got, err := tx.ClaimSagas(ctx, now, until, firstTakes)
			if err != nil {
				return err
			}
			holding <- got
			<-release
			return nil
		})
	}()
	var first []ordercore.Saga
	select {
	case first = <-holding:
	case err := <-firstDone:
		t.Fatalf("the first claim failed: %v", err)
	}

	secondCtx, cancel := context.WithTimeout(ctx, secondClaimMax)
	defer cancel()
	var second []ordercore.Saga
	start := time.Now()
	err := db.Write(secondCtx, func(tx ordercore.WriteTx) error {
		var err error
		second, err = tx.ClaimSagas(secondCtx, now, until, sagas)
		return err
	})
	waited := time.Since(start)
	close(release)
	if err != nil {
		t.Fatalf("the second claim, made while the first held its sagas, failed after %v: %v", waited, err)
	}
	if err := <-firstDone; err != nil {
		t.Fatalf("the first claim's transaction: %v", err)
	}

	gids := func(ss []ordercore.Saga) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.GID)
		}
		return out
	}
	if got, want := gids(first), gids(due[:firstTakes]); !slices.Equal(got, want) {
		t.Errorf("first claim took %v, want the %d earliest %v", got, firstTakes, want)
	}
	if got, want := gids(second), gids(due[firstTakes:]); !slices.Equal(got, want) {
		t.Errorf("second claim took %v, want what the first left, %v", got, want)
	}
	for _, s := range append(first, second...) {
		stored, err := db.Saga(ctx, s.GID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Version != 2 || !stored.NextRunAt.Equal(until) {
			t.Errorf("saga %s after both claims: version %d, next %v; want claimed once (version 2, next %v)", s.GID, stored.Version, stored.NextRunAt, until)
		}
	}
}
