package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"ordercore/internal/verify"
	"ordercore/sqlite"
)

func verifyCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "verify",
		Short: "Check every invariant of a database",
		Long: `Check a database: stock conservation against the ledger, no negative balances, each
reservation resolved at most once, order totals equal to their lines, projections equal to a
replay of the events, no unpaid order past its deadline. Prints a report; exits 1 if any
invariant is broken, 2 if the database cannot be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Stat(path); err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("database %s: %w", path, err)}
			}
			db, err := sqlite.Open(cmd.Context(), path, sqlite.Options{})
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			defer db.Close()
			snap, err := db.Dump(cmd.Context())
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			vs := verify.Check(snap, time.Now().UTC())
			verify.Report(cmd.OutOrStdout(), vs, snap)
			if len(vs) > 0 {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	c.Flags().StringVar(&path, "db", "./data/ordercore.db", "path of the SQLite database file")
	return c
}
