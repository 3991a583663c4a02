package ordercore_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The import rules of STYLE.md. They keep the domain pure (no I/O, no adapter can leak
// into a state machine) and the adapters interchangeable (sqlite and postgres pass one
// conformance suite only if neither leans on the other). Only direct imports are checked:
// a package is responsible for what it imports itself, and transitive rules follow.
const module = "ordercore"

// domainPackages may import only the standard library, the root and internal/limit.
var domainPackages = []string{
	"ordercore/internal/order",
	"ordercore/internal/payment",
	"ordercore/internal/limit",
	"ordercore/internal/idem",
	"ordercore/internal/verify",
}

var domainAllowed = []string{"ordercore", "ordercore/internal/limit"}

// domainExceptions are single, named departures from domainAllowed. verify judges replayed
// events by internal/order's transition table, the single source of truth for legal
// transitions; a copy in verify could drift from it silently (see internal/verify/doc.go).
// Both are pure, so the domain stays free of I/O.
var domainExceptions = map[string][]string{
	"ordercore/internal/verify": {"ordercore/internal/order"},
}

// adapters are the packages at the edge, one per outside dependency.
var adapters = []string{
	"ordercore/sqlite",
	"ordercore/postgres",
	"ordercore/httpapi",
	"ordercore/natsbus",
	"ordercore/inmem",
	"ordercore/console",
	"ordercore/telemetry",
	"ordercore/channel/sim",
	"ordercore/channel/stripe",
	"ordercore/channel/alipay",
	"ordercore/channel/wechat",
}

const engine = "ordercore/internal/engine"

// wiring packages are the only ones that see adapters and the engine together.
var wiring = []string{
	"ordercore/app",
	"ordercore/cli",
	"ordercore/cmd",
	"ordercore/bench",
	"ordercore/e2e",
}

// pkg is the part of `go list -json` output the rules need.
type pkg struct {
	ImportPath string
	Imports    []string // direct imports of the non-test files
}

func TestArchitecture(t *testing.T) {
	t.Parallel()
	pkgs := listPackages(t)
	if !slices.ContainsFunc(pkgs, func(p pkg) bool { return p.ImportPath == module }) {
		t.Fatalf("go list did not report the root package %q; got %d packages", module, len(pkgs))
	}
	for _, d := range domainPackages {
		if !slices.ContainsFunc(pkgs, func(p pkg) bool { return p.ImportPath == d }) {
			t.Logf("domain package %s does not exist yet; its rule is skipped", d)
		}
	}
	for _, v := range archViolations(pkgs) {
		t.Error(v)
	}
}

// listPackages runs `go list` over the whole module. Test files are left out on purpose:
// tests wire real adapters (the engine's tests run against sqlite, the root's tests import
// go-cmp), and no production binary links them.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	// -e: a package another change has left half written still reports its imports,
	// instead of hiding every other package's behind one error.
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// archViolations returns one message per forbidden import, naming the package, the
// import and the rule.
func archViolations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			if msg := checkImport(p.ImportPath, imp); msg != "" {
				out = append(out, fmt.Sprintf("%s imports %s: %s", p.ImportPath, imp, msg))
			}
		}
		if !within(p.ImportPath, wiring...) {
			a := slices.IndexFunc(p.Imports, func(imp string) bool { return within(imp, adapters...) })
			e := slices.IndexFunc(p.Imports, func(imp string) bool { return within(imp, engine) })
			if a >= 0 && e >= 0 {
				out = append(out, fmt.Sprintf("%s imports both adapter %s and %s: only %s may wire adapters to the engine",
					p.ImportPath, p.Imports[a], p.Imports[e], strings.Join(wiring, ", ")))
			}
		}
	}
	return out
}

// checkImport applies the per-import rules to one import of one package and returns why
// it is forbidden, or "".
func checkImport(from, imp string) string {
	switch {
	case from == module:
		if !standard(imp) {
			return "the root package may import only the standard library"
		}
	case slices.Contains(domainPackages, from):
		if !standard(imp) && !slices.Contains(domainAllowed, imp) && !slices.Contains(domainExceptions[from], imp) {
			return "domain packages may import only the standard library, " + strings.Join(domainAllowed, " and ")
		}
	}
	for _, a := range adapters {
		if within(from, a) && within(imp, adapters...) && !within(imp, a) {
			return "adapters must not import each other"
		}
	}
	return ""
}

// standard reports whether path is a standard-library package: its first element has no
// dot (every module path outside the standard library has a domain name) and it is not
// one of ours, whose module path happens to have no dot either.
func standard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".") && first != module
}

// within reports whether path is one of roots or below one of them.
func within(path string, roots ...string) bool {
	for _, r := range roots {
		if path == r || strings.HasPrefix(path, r+"/") {
			return true
		}
	}
	return false
}

// TestArchRules checks the checker on made-up packages: a rule that never fires would
// pass TestArchitecture forever.
func TestArchRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pkg  pkg
		want []string
	}{
		{
			name: "root with standard imports",
			pkg:  pkg{"ordercore", []string{"errors", "fmt", "time", "crypto/rand"}},
		},
		{
			name: "root importing a module",
			pkg:  pkg{"ordercore", []string{"fmt", "github.com/google/uuid"}},
			want: []string{"ordercore imports github.com/google/uuid: the root package may import only the standard library"},
		},
		{
			name: "root importing its own sub-package",
			pkg:  pkg{"ordercore", []string{"ordercore/internal/limit"}},
			want: []string{"ordercore imports ordercore/internal/limit: the root package may import only the standard library"},
		},
		{
			name: "domain with allowed imports",
			pkg:  pkg{"ordercore/internal/order", []string{"time", "ordercore", "ordercore/internal/limit"}},
		},
		{
			name: "domain importing an adapter",
			pkg:  pkg{"ordercore/internal/idem", []string{"ordercore", "ordercore/sqlite"}},
			want: []string{"ordercore/internal/idem imports ordercore/sqlite: domain packages may import only the standard library, ordercore and ordercore/internal/limit"},
		},
		{
			name: "domain importing the engine",
			pkg:  pkg{"ordercore/internal/verify", []string{"ordercore/internal/engine"}},
			want: []string{"ordercore/internal/verify imports ordercore/internal/engine: domain packages may import only the standard library, ordercore and ordercore/internal/limit"},
		},
		{
			name: "verify replaying through the order machine",
			pkg:  pkg{"ordercore/internal/verify", []string{"ordercore", "ordercore/internal/limit", "ordercore/internal/order"}},
		},
		{
			// The exception is verify's alone and one-way.
			name: "order importing verify",
			pkg:  pkg{"ordercore/internal/order", []string{"ordercore/internal/verify"}},
			want: []string{"ordercore/internal/order imports ordercore/internal/verify: domain packages may import only the standard library, ordercore and ordercore/internal/limit"},
		},
		{
			name: "idem importing the order machine",
			pkg:  pkg{"ordercore/internal/idem", []string{"ordercore/internal/order"}},
			want: []string{"ordercore/internal/idem imports ordercore/internal/order: domain packages may import only the standard library, ordercore and ordercore/internal/limit"},
		},
		{
			name: "limit importing the root",
			pkg:  pkg{"ordercore/internal/limit", []string{"fmt", "ordercore"}},
		},
		{
			name: "adapter importing its own sub-package",
			pkg:  pkg{"ordercore/sqlite", []string{"ordercore", "ordercore/sqlite/migrations", "modernc.org/sqlite"}},
		},
		{
			name: "adapter importing another adapter",
			pkg:  pkg{"ordercore/httpapi", []string{"ordercore", "ordercore/sqlite"}},
			want: []string{"ordercore/httpapi imports ordercore/sqlite: adapters must not import each other"},
		},
		{
			name: "adapter sub-package importing another adapter's sub-package",
			pkg:  pkg{"ordercore/console/pages", []string{"ordercore/httpapi/problem"}},
			want: []string{"ordercore/console/pages imports ordercore/httpapi/problem: adapters must not import each other"},
		},
		{
			name: "app wires adapter and engine",
			pkg:  pkg{"ordercore/app", []string{"ordercore/sqlite", "ordercore/httpapi", "ordercore/internal/engine"}},
		},
		{
			name: "command wires adapter and engine",
			pkg:  pkg{"ordercore/cmd/paysim", []string{"ordercore/inmem", "ordercore/internal/engine"}},
		},
		{
			name: "engine importing an adapter",
			pkg:  pkg{"ordercore/internal/engine", []string{"ordercore", "ordercore/sqlite"}},
		},
		{
			name: "adapter importing the engine",
			pkg:  pkg{"ordercore/httpapi", []string{"ordercore/internal/engine", "ordercore/console"}},
			want: []string{
				"ordercore/httpapi imports ordercore/console: adapters must not import each other",
				"ordercore/httpapi imports both adapter ordercore/console and ordercore/internal/engine: only ordercore/app, ordercore/cli, ordercore/cmd, ordercore/bench, ordercore/e2e may wire adapters to the engine",
			},
		},
		{
			name: "saga wiring adapter and engine",
			pkg:  pkg{"ordercore/internal/saga", []string{"ordercore/postgres", "ordercore/internal/engine"}},
			want: []string{"ordercore/internal/saga imports both adapter ordercore/postgres and ordercore/internal/engine: only ordercore/app, ordercore/cli, ordercore/cmd, ordercore/bench, ordercore/e2e may wire adapters to the engine"},
		},
		{
			// "ordercore/application" merely shares a prefix with "ordercore/app".
			name: "prefix is not a parent",
			pkg:  pkg{"ordercore/application", []string{"ordercore/natsbus", "ordercore/internal/engine"}},
			want: []string{"ordercore/application imports both adapter ordercore/natsbus and ordercore/internal/engine: only ordercore/app, ordercore/cli, ordercore/cmd, ordercore/bench, ordercore/e2e may wire adapters to the engine"},
		},
	}
	for _, tt := range tests {
		got := archViolations([]pkg{tt.pkg})
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: violations mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}
