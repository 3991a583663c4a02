package payment

import (
	"testing"

	"ordercore"
)

// TestTableIsComplete: every status has a cell for every report, so no report can be
// "unknown" to the machine by omission.
func TestTableIsComplete(t *testing.T) {
	t.Parallel()
	for _, from := range Statuses {
		for _, rep := range Reports {
			if _, ok := table[from][rep]; !ok {
				t.Errorf("no cell for %s on a %s report", from, rep)
			}
		}
	}
}

func TestNext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		from, rep, want ordercore.PaymentStatus
		stale           bool
	}{
		{ordercore.PaymentCreated, ordercore.PaymentPending, ordercore.PaymentPending, false},
		{ordercore.PaymentPending, ordercore.PaymentSucceeded, ordercore.PaymentSucceeded, false},
		{ordercore.PaymentPending, ordercore.PaymentPending, ordercore.PaymentPending, true},
		{ordercore.PaymentUnknown, ordercore.PaymentPending, ordercore.PaymentPending, false},
		{ordercore.PaymentClosed, ordercore.PaymentSucceeded, ordercore.PaymentSucceeded, false}, // paid as it closed
		{ordercore.PaymentFailed, ordercore.PaymentSucceeded, ordercore.PaymentSucceeded, false}, // the card retried
		{ordercore.PaymentFailed, ordercore.PaymentClosed, ordercore.PaymentClosed, false},       // our confirming close
		{ordercore.PaymentClosed, ordercore.PaymentFailed, ordercore.PaymentClosed, true},
		{ordercore.PaymentSucceeded, ordercore.PaymentFailed, ordercore.PaymentSucceeded, true}, // payment_failed after success
		{ordercore.PaymentSucceeded, ordercore.PaymentClosed, ordercore.PaymentSucceeded, true},
		{ordercore.PaymentSucceeded, ordercore.PaymentPending, ordercore.PaymentSucceeded, true}, // processing after succeeded
		{ordercore.PaymentPending, ordercore.PaymentUnknown, ordercore.PaymentUnknown, false},
		{ordercore.PaymentClosed, ordercore.PaymentUnknown, ordercore.PaymentClosed, true},
		{ordercore.PaymentPending, ordercore.PaymentCreated, ordercore.PaymentPending, true},
		{ordercore.PaymentPending, "bogus", ordercore.PaymentPending, true},
	}
	for _, tt := range tests {
		got, stale := Next(tt.from, tt.rep)
		if got != tt.want || stale != tt.stale {
			t.Errorf("Next(%s, %s) = %s, stale %v; want %s, stale %v", tt.from, tt.rep, got, stale, tt.want, tt.stale)
		}
	}
}

func TestNextRefund(t *testing.T) {
	t.Parallel()
	for _, rep := range []ordercore.RefundStatus{ordercore.RefundSucceeded, ordercore.RefundFailed, ordercore.RefundAbnormal} {
		if got, stale := NextRefund(ordercore.RefundPending, rep); got != rep || stale {
			t.Errorf("NextRefund(pending, %s) = %s, %v", rep, got, stale)
		}
		for _, from := range []ordercore.RefundStatus{ordercore.RefundSucceeded, ordercore.RefundFailed, ordercore.RefundAbnormal} {
			if got, stale := NextRefund(from, rep); got != from || !stale {
				t.Errorf("NextRefund(%s, %s) = %s, %v; an ended refund never moves", from, rep, got, stale)
			}
		}
	}
	if got, stale := NextRefund(ordercore.RefundPending, ordercore.RefundPending); got != ordercore.RefundPending || !stale {
		t.Errorf("still pending moved it: %s %v", got, stale)
	}
}

// FuzzReports feeds arbitrary report sequences to a new attempt and checks what P2 rests
// on: succeeded, once reached, never changes; it is reached only by a succeeded report; a
// stale report changes nothing; an open attempt is closed or failed only by that report.
func FuzzReports(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3})
	f.Add([]byte{4, 3, 1, 0, 2})
	f.Add([]byte{2, 3, 1, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		s := ordercore.PaymentCreated
		for i, b := range in {
			rep := Reports[int(b)%len(Reports)]
			next, stale := Next(s, rep)
			switch {
			case stale && next != s:
				t.Fatalf("step %d: stale report %s moved %s to %s", i, rep, s, next)
			case s == ordercore.PaymentSucceeded && next != s:
				t.Fatalf("step %d: %s moved a succeeded attempt to %s", i, rep, next)
			case next == ordercore.PaymentSucceeded && s != ordercore.PaymentSucceeded && rep != ordercore.PaymentSucceeded:
				t.Fatalf("step %d: %s report made %s succeeded", i, rep, s)
			case !stale && next != rep:
				t.Fatalf("step %d: %s report moved %s to %s, not to the reported status", i, rep, s, next)
			}
			s = next
		}
	})
}
