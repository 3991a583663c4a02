package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
)

// fulfilmentFile is the format of `serve --fulfilment FILE`: the steps of the saga every
// paid order gets, as POST /v1/sagas takes them, and its policy. A kind, if given, must
// be saga; deadline_seconds counts from the moment the order is paid.
type fulfilmentFile struct {
	Kind   string               `json:"kind"`
	Steps  []ordercore.SagaStep `json:"steps"`
	Policy struct {
		StepTimeoutMs         int64 `json:"step_timeout_ms"`
		RetriesMax            int   `json:"retries_max"`
		BackoffMinMs          int64 `json:"backoff_min_ms"`
		BackoffMaxMs          int64 `json:"backoff_max_ms"`
		CompensateAttemptsMax int   `json:"compensate_attempts_max"`
		DeadlineSeconds       int64 `json:"deadline_seconds"`
	} `json:"policy"`
}

// LoadFulfilment reads and checks a fulfilment configuration file, e.g.
//
//	{"steps": [
//	  {"name": "points", "action": {"url": "http://loyalty/award", "payload": {"per_unit": 10}},
//	                     "compensate": {"url": "http://loyalty/revoke"}},
//	  {"name": "shipment", "action": {"url": "http://warehouse/ship"},
//	                       "compensate": {"url": "http://warehouse/cancel"}},
//	  {"name": "notify", "action": {"local": "ordercore.notify", "payload": {"template": "shipped"}}}],
//	 "policy": {"step_timeout_ms": 5000, "retries_max": 8}}
//
// Each call receives {"order": <the order>, "data": <its payload>}.
func LoadFulfilment(path string) (*engine.Fulfilment, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--fulfilment: %w", err)
	}
	var f fulfilmentFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("--fulfilment %s: %w", path, err)
	}
	if f.Kind != "" && f.Kind != string(ordercore.SagaKindSaga) {
		return nil, fmt.Errorf("--fulfilment %s: kind %q: a fulfilment is a saga (actions with compensations)", path, f.Kind)
	}
	if d := f.Policy.DeadlineSeconds; d < 0 || d > limit.SagaDeadlineSecondsMax {
		return nil, fmt.Errorf("--fulfilment %s: policy.deadline_seconds must be 0..%d", path, limit.SagaDeadlineSecondsMax)
	}
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	out := &engine.Fulfilment{Steps: f.Steps, Policy: ordercore.SagaPolicy{StepTimeout: ms(f.Policy.StepTimeoutMs),
		RetriesMax: f.Policy.RetriesMax, BackoffMin: ms(f.Policy.BackoffMinMs), BackoffMax: ms(f.Policy.BackoffMaxMs),
		CompensateAttemptsMax: f.Policy.CompensateAttemptsMax}, Deadline: time.Duration(f.Policy.DeadlineSeconds) * time.Second}
	for i := range out.Steps {
		out.Steps[i].Status, out.Steps[i].Attempts, out.Steps[i].Called, out.Steps[i].LastError = "", 0, false, ""
		if out.Steps[i].Confirm != nil {
			return nil, fmt.Errorf("--fulfilment %s: step %d: confirm belongs to TCC branches", path, i+1)
		}
	}
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("--fulfilment %s: %s", path, ordercore.ErrorMessage(err))
	}
	return out, nil
}
