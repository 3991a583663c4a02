package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"testing"

	"ordercore/cli"
)

// childEnv, when set to childCLI in the environment, makes the test binary run the real
// command line instead of the tests: `<test binary> -- serve --addr ...` is then exactly
// `ordercore serve --addr ...`.
const (
	childEnv = "ORDERCORE_E2E_CHILD"
	childCLI = "cli"
	// childArgsSep separates the test binary's own arguments from the command line's.
	childArgsSep = "--"
	// childOrphanExit is the exit code of a child whose parent went away.
	childOrphanExit = 3
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == childCLI {
		os.Exit(runChild(os.Args))
	}
	os.Exit(m.Run())
}

// runChild runs cli.Main with the arguments after childArgsSep, under a context that
// SIGINT and SIGTERM cancel, as cmd/ordercore does.
func runChild(argv []string) int {
	i := slices.Index(argv, childArgsSep)
	if i < 0 {
		fmt.Fprintf(os.Stderr, "e2e child: no %q in %q\n", childArgsSep, argv)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go exitWhenOrphaned()
	return cli.Main(ctx, argv[i+1:], os.Stdout, os.Stderr)
}

// exitWhenOrphaned ends the child when its stdin, a pipe held by the test process, reaches
// EOF: the test process died (a panic, `go test -timeout`) without killing its child. A
// child left behind would hold a port and the data directory. Pdeathsig would do the same
// but fires when the forking OS thread exits, not the process (go.dev/issue/27505).
func exitWhenOrphaned() {
	_, _ = io.Copy(io.Discard, os.Stdin)
	fmt.Fprintln(os.Stderr, "e2e child: the test process went away; exiting")
	os.Exit(childOrphanExit)
}
