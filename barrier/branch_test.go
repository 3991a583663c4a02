package barrier_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"ordercore/barrier"
)

func TestFromQuery(t *testing.T) {
	t.Parallel()
	q := func(s string) url.Values {
		v, err := url.ParseQuery(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		query string
		want  barrier.Branch // zero when the query must be rejected
	}{
		// What a DTM coordinator sends to a TCC try and a saga compensation.
		{"gid=G1&trans_type=tcc&branch_id=01&op=try&dtm=http%3A%2F%2Fdtm", barrier.Branch{TransType: "tcc", GID: "G1", BranchID: "01", Op: "try"}},
		{"gid=G1&trans_type=saga&branch_id=02&op=compensate", barrier.Branch{TransType: "saga", GID: "G1", BranchID: "02", Op: "compensate"}},
		{"gid=G1&trans_type=tcc&branch_id=01&op=confirm", barrier.Branch{TransType: "tcc", GID: "G1", BranchID: "01", Op: "confirm"}},
		{"gid=G1&trans_type=tcc&branch_id=01&op=cancel", barrier.Branch{TransType: "tcc", GID: "G1", BranchID: "01", Op: "cancel"}},
		{"gid=G1&trans_type=saga&branch_id=01&op=action", barrier.Branch{TransType: "saga", GID: "G1", BranchID: "01", Op: "action"}},
		{"gid=" + strings.Repeat("g", barrier.GIDBytesMax) + "&trans_type=tcc&branch_id=01&op=try",
			barrier.Branch{TransType: "tcc", GID: strings.Repeat("g", barrier.GIDBytesMax), BranchID: "01", Op: "try"}},
		{"gid=G%C3%A9&trans_type=tcc&branch_id=01&op=try", barrier.Branch{TransType: "tcc", GID: "Gé", BranchID: "01", Op: "try"}},
		// Rejected.
		{"trans_type=tcc&branch_id=01&op=try", barrier.Branch{}},
		{"gid=G1&branch_id=01&op=try", barrier.Branch{}},
		{"gid=G1&trans_type=tcc&op=try", barrier.Branch{}},
		{"gid=G1&trans_type=tcc&branch_id=01", barrier.Branch{}},
		{"gid=G1&trans_type=tcc&branch_id=01&op=action", barrier.Branch{}},  // a saga op in TCC
		{"gid=G1&trans_type=saga&branch_id=01&op=cancel", barrier.Branch{}}, // a TCC op in a saga
		{"gid=G1&trans_type=msg&branch_id=01&op=action", barrier.Branch{}},  // not supported
		{"gid=G1&trans_type=tcc&branch_id=01&op=TRY", barrier.Branch{}},
		{"gid=" + strings.Repeat("g", barrier.GIDBytesMax+1) + "&trans_type=tcc&branch_id=01&op=try", barrier.Branch{}},
		{"gid=G1&trans_type=tcc&branch_id=" + strings.Repeat("b", barrier.BranchIDBytesMax+1) + "&op=try", barrier.Branch{}},
		{"gid=G1%0Aforged&trans_type=tcc&branch_id=01&op=try", barrier.Branch{}},
		{"gid=G1%00&trans_type=tcc&branch_id=01&op=try", barrier.Branch{}},
		{"gid=G1%FF&trans_type=tcc&branch_id=01&op=try", barrier.Branch{}},
	}
	for _, tt := range tests {
		got, err := barrier.FromQuery(q(tt.query))
		if tt.want == (barrier.Branch{}) {
			if err == nil || !errors.Is(err, barrier.ErrInvalid) || !errors.Is(err, barrier.ErrFailure) {
				t.Errorf("FromQuery(%q) = %v, %v; want an error wrapping ErrInvalid and ErrFailure", tt.query, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("FromQuery(%q): %v", tt.query, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("FromQuery(%q) (-want +got):\n%s", tt.query, diff)
		}
	}
}

// TestDialectRejected: a bad table name or engine is refused before any SQL is sent (the
// name is pasted into statements), and is not mistaken for a failure for good.
func TestDialectRejected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	br := barrier.Branch{TransType: barrier.TransTCC, GID: "g", BranchID: "b", Op: barrier.OpTry}
	bad := []barrier.Dialect{
		{Engine: "mysql"},
		{Engine: barrier.SQLite, Table: "Barrier"},
		{Engine: barrier.Postgres, Table: "barrier; DROP TABLE stock"},
		{Engine: barrier.Postgres, Table: "a.b.c"},
		{Engine: barrier.Postgres, Table: "1barrier"},
		{Engine: barrier.Postgres, Table: "s."},
		{Engine: barrier.Postgres, Table: strings.Repeat("t", 64)},
	}
	for _, d := range bad {
		// A nil database and transaction: reaching either would panic.
		if err := barrier.Migrate(ctx, nil, d); err == nil || errors.Is(err, barrier.ErrFailure) {
			t.Errorf("Migrate with %+v: %v, want a non-failure error", d, err)
		}
		if err := br.Call(ctx, nil, d, nil); err == nil || errors.Is(err, barrier.ErrFailure) {
			t.Errorf("Call with %+v: %v, want a non-failure error", d, err)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		want     int
		wantBody map[string]string
	}{
		{"success", nil, 200, map[string]string{"dtm_result": "SUCCESS"}},
		{"hanging", fmt.Errorf("%w: tcc g/b try", barrier.ErrHanging), 409,
			map[string]string{"dtm_result": "FAILURE", "message": "FAILURE: barrier: hanging request: the branch was already cancelled or compensated: tcc g/b try"}},
		{"business refusal", fmt.Errorf("reserve: %w: out of stock", barrier.ErrFailure), 409,
			map[string]string{"dtm_result": "FAILURE", "message": "reserve: FAILURE: out of stock"}},
		{"invalid", barrier.ErrInvalid, 409, map[string]string{"dtm_result": "FAILURE", "message": barrier.ErrInvalid.Error()}},
		{"internal", errors.New("connection reset"), 500, map[string]string{"error": "internal error"}},
		// An internal error whose text says FAILURE must still be retried: DTM reads
		// FAILURE anywhere in a body as failed for good.
		{"internal error saying FAILURE", errors.New("pq: AUTHENTICATION FAILURE"), 500, map[string]string{"error": "internal error"}},
		{"context", context.DeadlineExceeded, 500, map[string]string{"error": "internal error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := barrier.HTTPStatus(tt.err); got != tt.want {
				t.Errorf("HTTPStatus = %d, want %d", got, tt.want)
			}
			rec := httptest.NewRecorder()
			barrier.WriteHTTP(rec, tt.err)
			if rec.Code != tt.want {
				t.Errorf("WriteHTTP status %d, want %d", rec.Code, tt.want)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			body := rec.Body.String()
			var got map[string]string
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if diff := cmp.Diff(tt.wantBody, got); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			// DTM's client: 409 or FAILURE in the body means failed for good.
			dtmFailure := rec.Code == http.StatusConflict || strings.Contains(body, "FAILURE")
			if dtmFailure != (tt.want == http.StatusConflict) {
				t.Errorf("a DTM client would read %q (status %d) as failure %v", body, rec.Code, dtmFailure)
			}
		})
	}
}

// TestErrorsAreDistinct: a participant can tell a hanging try from other failures, and
// every failure for good from a retryable error.
func TestErrorsAreDistinct(t *testing.T) {
	t.Parallel()
	if !errors.Is(barrier.ErrHanging, barrier.ErrFailure) || !errors.Is(barrier.ErrInvalid, barrier.ErrFailure) {
		t.Error("ErrHanging and ErrInvalid must be failures for good")
	}
	if errors.Is(barrier.ErrHanging, barrier.ErrInvalid) || errors.Is(barrier.ErrInvalid, barrier.ErrHanging) {
		t.Error("ErrHanging and ErrInvalid must be told apart")
	}
	if errors.Is(barrier.ErrFailure, barrier.ErrHanging) {
		t.Error("a business failure must not read as hanging")
	}
}
