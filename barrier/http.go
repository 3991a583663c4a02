package barrier

import (
	"encoding/json"
	"errors"
	"net/http"
)

// HTTPStatus maps the result of Call, CallDB or a participant's own handler to the status
// a DTM coordinator understands:
//
//   - nil: 200, the branch succeeded (also a duplicate or a null compensation);
//   - ErrFailure and everything wrapping it (ErrHanging, ErrInvalid, business refusals):
//     409, failed for good, the coordinator rolls back instead of retrying;
//   - anything else: 500, try again later; the barrier makes the retry safe.
func HTTPStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrFailure):
		return http.StatusConflict
	default:
		return http.StatusInternalServerError
	}
}

// WriteHTTP writes HTTPStatus(err) and a JSON body in DTM's style: {"dtm_result":"SUCCESS"},
// {"dtm_result":"FAILURE","message":...} or {"error":"internal error"}.
//
// The 500 body never carries the error's text. A DTM client reads a body containing
// "FAILURE" as failed for good whatever the status (and "ONGOING" as not yet), so an
// internal error whose text happened to contain either word would turn a retry into a
// rollback. The error is the caller's to log.
func WriteHTTP(w http.ResponseWriter, err error) {
	status := HTTPStatus(err)
	var body map[string]string
	switch status {
	case http.StatusOK:
		body = map[string]string{"dtm_result": "SUCCESS"}
	case http.StatusConflict:
		body = map[string]string{"dtm_result": "FAILURE", "message": err.Error()}
	default:
		body = map[string]string{"error": "internal error"}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A write error means the coordinator went away; it will retry, and the barrier
	// answers the retry the same way.
	_ = json.NewEncoder(w).Encode(body)
}
