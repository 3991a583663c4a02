// Package e2e holds ordercore's black-box suites: they drive the real command line
// (cli.Main, the same code path as the ordercore binary: cli -> app -> engine -> sqlite) in
// a child process and talk to it only over HTTP, as a shop would. Nothing inside the
// process is stubbed or reached into; what the suites assert is what a client can observe,
// plus `ordercore verify` over the database the run leaves behind.
//
// The child is the test binary itself, re-executed: TestMain (main_test.go) turns it into
// `ordercore <args>` when ORDERCORE_E2E_CHILD is set, so no separate build step is needed
// and the suites always test the code of the tree they run in.
//
// Suites:
//   - crash (crash_test.go): P5, a request answered 2xx survives kill -9 at any moment. A
//     child `ordercore serve` under concurrent load is killed with SIGKILL at a random
//     moment, restarted, and checked against the harness's log of acknowledged requests,
//     many times over one data directory; the run ends with `ordercore verify`.
//   - later: browser (the console through chromedp), faults (full disks, fsync errors,
//     toxiproxy), linearizability (porcupine over per-SKU histories).
//
// Every wait is bounded and no test asserts on timing: the suites check outcomes, and
// throughput figures belong to `ordercore bench`.
//
// The package is wiring (arch_test.go): it may import the cli, but it talks to ordercore
// through its command line and HTTP API only, with its own wire types, so a change of the
// Go types that silently changes the wire format is caught here.
package e2e
