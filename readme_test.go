package ordercore_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestREADMEListsEveryErrorCode: clients switch on error codes, and the README is where
// they learn them: every code declared in error.go is named there.
func TestREADMEListsEveryErrorCode(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), "error.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		vs, ok := node.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || len(vs.Values) != 1 || !strings.HasPrefix(vs.Names[0].Name, "E") {
			return true
		}
		lit, ok := vs.Values[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		code, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		n++
		if !strings.Contains(string(readme), "`"+code+"`") {
			t.Errorf("error code %s (%s) is not in README.md", code, vs.Names[0].Name)
		}
		return true
	})
	if n < 30 {
		t.Fatalf("found %d error codes in error.go; the test no longer reads them", n)
	}
}
