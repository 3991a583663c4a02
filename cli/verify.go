package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"ordercore"
	"ordercore/app"
	"ordercore/internal/verify"
	"ordercore/sqlite"
)

func verifyCmd() *cobra.Command {
	var path, asOf string
	c := &cobra.Command{
		Use:   "verify",
		Short: "Check every invariant of a database",
		Long: `Check a database: stock conservation against the ledger, no negative balances, each
reservation resolved at most once, order totals equal to their lines, projections equal to a
replay of the events, no unpaid order past its deadline; payment balances equal to the money
ledger, no refund beyond the capture, each refund held once and settled at most once, one
accepted payment per order paid through a channel, every duplicate or late payment refunded
or under review, no open payment or pending refund without a next action. Prints a report;
exits 1 if any invariant is broken, 2 if the database cannot be read or holds no ordercore
database (verify never creates one; an older ordercore database is brought up to date).

The deadline rule judges unpaid orders against --as-of: "now" (the default) for the
database of a running server; "last-event", the time of its newest event, for a copy or
the database of a server that has been stopped (nothing could have expired them since);
or an RFC 3339 time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Stat(path); err != nil && !app.IsPostgres(path) {
				return &ExitError{Code: 2, Err: fmt.Errorf("database %s: %w", path, err)}
			}
			if err := app.CheckExisting(cmd.Context(), path); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			var db app.Store
			var err error
			if app.IsPostgres(path) {
				db, _, err = app.OpenStore(cmd.Context(), path, "")
			} else {
				db, err = sqlite.Open(cmd.Context(), path, sqlite.Options{})
			}
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			defer db.Close()
			snap, err := db.Dump(cmd.Context())
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			at, err := asOfTime(asOf, snap)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			vs := verify.Check(snap, at)
			verify.Report(cmd.OutOrStdout(), vs, snap)
			if len(vs) > 0 {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	c.Flags().StringVar(&path, "db", "./data/ordercore.db", "path of the SQLite database file, or a PostgreSQL URL (postgres://...)")
	c.Flags().StringVar(&asOf, "as-of", "now", `time unpaid orders are judged against: now, last-event, or an RFC 3339 time`)
	return c
}

func asOfTime(s string, snap *ordercore.Snapshot) (time.Time, error) {
	switch s {
	case "now":
		return time.Now().UTC(), nil
	case "last-event":
		if n := len(snap.Events); n > 0 {
			return snap.Events[n-1].Time, nil
		}
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("--as-of must be now, last-event or an RFC 3339 time: %w", err)
	}
	return t, nil
}
