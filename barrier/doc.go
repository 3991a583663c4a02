// Package barrier is a sub-transaction barrier for participants of sagas and TCC
// transactions, after DTM's (dtm-labs/dtm, dtmcli/barrier.go; en.dtm.pub/practice/barrier).
// A participant wraps each branch operation's business function in Branch.Call (or
// CallDB), and the barrier makes the function run at most once, in the right order, with
// no bookkeeping of its own.
//
// # What goes wrong without it
//
// A coordinator retries, times out and compensates over a network that delays and
// duplicates, so a participant sees, for one branch:
//
//   - duplicates: the same op twice (a retry after a lost response);
//   - null compensation: cancel (compensate) before try (action), because try was delayed
//     or never arrived; there is nothing to undo;
//   - hanging: try arriving after its cancel; run, it would reserve something that nothing
//     will ever release.
//
// # How it works
//
// A table (Migrate; default name ordercore_barrier) holds one row per (gid, branch_id,
// op), written in the participant's own transaction, so a row exists exactly when the op's
// effects committed. The op's row is inserted with INSERT ... ON CONFLICT DO NOTHING
// before anything is decided ("change instead of check"): a cancel also inserts the try's
// row, with reason "cancel". Then:
//
//	first run of an op                 fn runs; its row commits with fn's effects, or
//	                                   neither does (fn's error rolls both back, and a
//	                                   retry runs fn again)
//	duplicate                          fn skipped, nil
//	cancel before try (null comp.)     try's row inserted with reason cancel; fn skipped, nil
//	try after cancel (hanging)         try's row already there, reason cancel: ErrHanging
//	try after a cancel that undid it   try's row has reason try: a duplicate, nil
//	confirm                            duplicates only, as in DTM
//
// Saga action and compensate behave as try and cancel.
//
// Concurrent try and cancel of one branch race for the try row's unique key, and nothing
// is read before that insert, so neither can decide on a stale view of the other.
// PostgreSQL (at READ COMMITTED, its default) makes the loser's insert wait for the
// winner's transaction; SQLite admits one writer at a time. Either try commits first and
// cancel, finding try's row, undoes its effect; or cancel commits first and try gets
// ErrHanging; if the first transaction rolls back instead, the second proceeds as if it
// had come alone. No reservation is left without its release. Under REPEATABLE READ or
// SERIALIZABLE the loser fails with a serialization error instead, which is retryable,
// and the retry is decided the same way.
//
// # The difference from DTM
//
// DTM's current dtmcli/barrier.go answers a hanging try with success and skips its
// business function: nothing is reserved and the coordinator, already rolling back, does
// not care. (Earlier versions told a hanging try from a duplicate by the row's reason, as
// here, and returned ErrFailure; later ones answer both with success.) Here the hanging try
// fails with ErrHanging (409 over HTTP): a coordinator or any other caller that did not
// know the branch was cancelled learns that the try did not take effect, instead of
// believing a reservation exists that never will. Nothing is left behind either way.
//
// Also unlike DTM: Call leaves commit and rollback to its caller (CallDB does both), the
// table has no barrier_id column, so a request passes the barrier once per table (a
// participant writing to two databases keeps a table in each), and only TCC and saga
// branches are accepted (not DTM's msg, xa or workflow).
//
// # Results over HTTP
//
// HTTPStatus and WriteHTTP turn a result into DTM's convention: 200 for success, 409 with
// "FAILURE" in the body for failed for good (ErrFailure and everything wrapping it:
// ErrHanging, ErrInvalid, a participant's business refusal), 500 for everything else, which
// the coordinator retries.
//
// # Imports
//
// Only the standard library: database/sql with the participant's driver (SQLite through
// modernc.org/sqlite, PostgreSQL through pgx's stdlib), chosen by Dialect. It must not
// import ordercore's packages, so other programs can use it alone.
package barrier
