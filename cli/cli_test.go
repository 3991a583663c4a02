package cli_test

import (
	"context"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"ordercore/cli"
)

// TestMain lets the scripts run the real command line as "ordercore".
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ordercore": func() { os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata"})
}
