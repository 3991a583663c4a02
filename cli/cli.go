// Package cli is the ordercore command line: serve, verify, bench. Main is what
// cmd/ordercore calls, and what tests call to run the real commands in-process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X ordercore/cli.Version=...".
var Version = "dev"

// ExitError carries a specific exit code out of a command.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }

// Main runs the command line with args (without the program name) and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:   "ordercore",
		Short: "The order, inventory and payment core of an online shop",
		Long: `ordercore runs orders, two-phase stock reservations and the events they emit, on an
embedded SQLite file, with group commit so a hot SKU takes tens of thousands of orders per
second without ever overselling.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(serveCmd(), verifyCmd(), benchCmd(), paysimCmd())
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintln(stderr, "ordercore:", ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintln(stderr, "ordercore:", err)
	return 1
}

// Run is main: it cancels the context on SIGINT or SIGTERM and exits with Main's code.
func Run() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func logger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}
