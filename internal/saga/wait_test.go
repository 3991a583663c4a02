package saga_test

import (
	"context"
	"testing"
	"time"

	"ordercore"
	"ordercore/internal/saga"
)

// TestWaitEndsWithTheSagaWhenItsDeadlinePassesDuringARead: a poll's read that the wait's
// deadline cuts short is not the wait's error: the wait ends with the saga as it is.
func TestWaitEndsWithTheSagaWhenItsDeadlinePassesDuringARead(t *testing.T) {
	t.Parallel()
	c := &saga.Coordinator{}
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	reads := 0
	read := func(ctx context.Context, gid string) (ordercore.Saga, error) {
		reads++
		if _, ok := ctx.Deadline(); ok {
			<-ctx.Done() // a read still out when the wait's deadline passes
			return ordercore.Saga{}, ctx.Err()
		}
		return ordercore.Saga{GID: gid, Status: ordercore.SagaRunning}, nil
	}
	s, err := c.Wait(ctx, "w-1", make(chan ordercore.Saga), read)
	if err != nil {
		t.Fatalf("Wait: %v, want the saga as it is", err)
	}
	if s.GID != "w-1" || s.Status != ordercore.SagaRunning || reads < 2 {
		t.Fatalf("Wait returned %+v after %d reads, want the running saga read again without the deadline", s, reads)
	}
}
