package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ordercore/app"
)

// TestFulfilmentFileTakesASagaSubmit: the body of a POST /v1/sagas that submits a saga
// is a fulfilment file, its kind and its policy's deadline included; a TCC or a deadline
// out of range is refused.
func TestFulfilmentFileTakesASagaSubmit(t *testing.T) {
	t.Parallel()
	write := func(body string) string {
		path := filepath.Join(t.TempDir(), "steps.json")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	steps := `"steps": [{"name": "ship", "action": {"url": "http://warehouse.test/ship"}, "compensate": {"url": "http://warehouse.test/cancel"}}]`
	f, err := app.LoadFulfilment(write(`{"kind": "saga", ` + steps + `, "policy": {"retries_max": 3, "deadline_seconds": 3600}}`))
	if err != nil {
		t.Fatalf("a saga submit's body: %v", err)
	}
	if f.Deadline != time.Hour || f.Policy.RetriesMax != 3 || len(f.Steps) != 1 {
		t.Errorf("loaded %+v; want a deadline of 1h, 3 retries, one step", f)
	}
	for body, want := range map[string]string{
		`{"kind": "tcc", ` + steps + `}`:                          `kind "tcc"`,
		`{` + steps + `, "policy": {"deadline_seconds": -1}}`:     "deadline_seconds must be 0..604800",
		`{` + steps + `, "policy": {"deadline_seconds": 604801}}`: "deadline_seconds must be 0..604800",
		`{"kind": "saga", "gid": "x", ` + steps + `}`:             `unknown field "gid"`,
	} {
		if _, err := app.LoadFulfilment(write(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want an error naming %s", body, err, want)
		}
	}
}
