package saga_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"ordercore"
)

// TestAnswersReadAsDTMReadsThem: a participant's answer is read by DTM's rule: 425 or
// ONGOING is not finished (retried), 409 or FAILURE is failed for good whatever the
// status (ONGOING first), other non-2xx answers are retried.
func TestAnswersReadAsDTMReadsThem(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	for _, c := range []struct {
		name   string
		status int
		body   string
		want   ordercore.SagaStatus // after retries_max attempts at most
		calls  int                  // of the action
	}{
		{"500 with FAILURE", 500, `{"dtm_result":"FAILURE"}`, ordercore.SagaCompensated, 1},
		{"400 with FAILURE", 400, `{"dtm_result":"FAILURE","message":"bad"}`, ordercore.SagaCompensated, 1},
		{"409", 409, `conflict`, ordercore.SagaCompensated, 1},
		{"425 then ok", 425, `too early`, ordercore.SagaCompleted, 2},
		{"409 with ONGOING then ok", 409, `{"dtm_result":"ONGOING"}`, ordercore.SagaCompleted, 2},
		{"200 with ONGOING and FAILURE then ok", 200, `{"dtm_result":"ONGOING","note":"FAILURE later?"}`, ordercore.SagaCompleted, 2},
		{"500 then ok", 500, `boom`, ordercore.SagaCompleted, 2},
		// A body that states its dtm_result is taken at its word, whatever its message
		// quotes (a SKU named ONGOING-tee, a gid with FAILURE in it).
		{"409 FAILURE quoting ONGOING", 409, `{"dtm_result":"FAILURE","message":"sku \"ONGOING-tee\" has 1 left"}`, ordercore.SagaCompensated, 1},
		{"200 ONGOING quoting FAILURE then ok", 200, `{"dtm_result":"ONGOING","message":"gid FAILURE-1"}`, ordercore.SagaCompleted, 2},
		// A redirect is not followed: it is an answer that is not 2xx, retried.
		{"307 then ok", 307, ``, ordercore.SagaCompleted, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if req.URL.Path == "/elsewhere" { // where the 307 points: followed, the step fails
					w.WriteHeader(409)
					return
				}
				if req.URL.Query().Get("op") != "action" {
					w.Write([]byte(`{"dtm_result":"SUCCESS"}`))
					return
				}
				if calls.Add(1) == 1 {
					if c.status == 307 {
						w.Header().Set("Location", "/elsewhere?op=action")
					}
					w.WriteHeader(c.status)
					w.Write([]byte(c.body))
					return
				}
				w.Write([]byte(`{"dtm_result":"SUCCESS"}`))
			}))
			t.Cleanup(host.Close)
			p := &participant{srv: host}
			gid := "ans-" + strings.NewReplacer(" ", "-").Replace(c.name)
			r.submit(t, p, gid, ordercore.SagaKindSaga, 1)
			s := r.wait(t, gid, c.want)
			if s.Steps[0].Status == ordercore.StepFailed && c.want != ordercore.SagaCompensated {
				t.Fatalf("step failed: %s", s.Reason)
			}
			if n := calls.Load(); int(n) != c.calls {
				t.Errorf("%d calls of the action, want %d", n, c.calls)
			}
		})
	}
}
