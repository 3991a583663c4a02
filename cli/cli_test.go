package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rogpeppe/go-internal/testscript"

	"ordercore/cli"
)

// TestMain lets the scripts run the real command line as "ordercore", exactly as
// cmd/ordercore does (cli.Run: SIGINT and SIGTERM stop a server gracefully).
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ordercore": cli.Run,
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata", Cmds: map[string]func(*testscript.TestScript, bool, []string){
		"freeport": cmdFreeport,
		"http":     cmdHTTP,
		"jsonvar":  cmdJSONVar,
		"waitfor":  cmdWaitFor,
		"pgschema": cmdPGSchema,
	}, Condition: condition})
}

// condition answers [pg]: a PostgreSQL is reachable at pgURL. Under CI=true an
// unreachable one is an error, not a skip: the services must be there.
func condition(cond string) (bool, error) {
	if cond != "pg" {
		return false, fmt.Errorf("unknown condition %q", cond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL())
	if err != nil {
		if os.Getenv("CI") == "true" {
			return false, fmt.Errorf("PostgreSQL at %s is not reachable under CI: %w", pgURL(), err)
		}
		return false, nil
	}
	conn.Close(ctx)
	return true, nil
}

// pgURL is the PostgreSQL of the test machines (ORDERCORE_TEST_PG overrides).
func pgURL() string {
	if u := os.Getenv("ORDERCORE_TEST_PG"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// cmdPGSchema: pgschema URLVAR SCHEMAVAR sets URLVAR to the test PostgreSQL's URL and
// SCHEMAVAR to a fresh schema name, dropped when the script ends (guard the script with
// [!pg] skip).
func cmdPGSchema(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: pgschema URLVAR SCHEMAVAR")
	}
	schema := fmt.Sprintf("cli_%d_%d", os.Getpid(), time.Now().UnixNano())
	ts.Defer(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, pgURL()); err == nil {
			conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			conn.Close(ctx)
		}
	})
	ts.Setenv(args[0], pgURL())
	ts.Setenv(args[1], schema)
}

// cmdFreeport: freeport VAR... sets each VAR to a distinct free TCP port on 127.0.0.1.
func cmdFreeport(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: freeport VAR...")
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, name := range args {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		lns = append(lns, ln)
		ts.Setenv(name, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
}

// cmdHTTP: http METHOD URL [BODY] sends BODY (as JSON) and prints the status code on the
// first line of stdout and the response body after it. It fails unless the status is 2xx;
// "! http" expects a status that is not.
func cmdHTTP(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: http METHOD URL [BODY]")
	}
	var body io.Reader
	if len(args) == 3 {
		body = strings.NewReader(args[2])
	}
	req, err := http.NewRequest(args[0], args[1], body)
	ts.Check(err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "%d\n%s\n", resp.StatusCode, b)
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if ok && neg {
		ts.Fatalf("unexpected status %d", resp.StatusCode)
	}
	if !ok && !neg {
		ts.Fatalf("status %d", resp.StatusCode)
	}
}

// cmdJSONVar: jsonvar VAR FIELD sets VAR to the top-level string FIELD of the JSON body
// the last http command printed.
func cmdJSONVar(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: jsonvar VAR FIELD")
	}
	out := ts.ReadFile("stdout")
	_, body, _ := strings.Cut(out, "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		ts.Fatalf("jsonvar: last output is not a status line and a JSON object: %v", err)
	}
	s, ok := m[args[1]].(string)
	if !ok || s == "" {
		ts.Fatalf("jsonvar: no string field %q in %s", args[1], body)
	}
	ts.Setenv(args[0], s)
}

// cmdWaitFor: waitfor [-timeout D] [-status N] URL [REGEXP] polls GET URL until it
// answers status N (default any 2xx) with a body matching REGEXP, and fails after the
// timeout (default 5s). The last body is printed to stdout.
func cmdWaitFor(ts *testscript.TestScript, neg bool, args []string) {
	timeout, status := 5*time.Second, 0
	for len(args) >= 2 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-timeout":
			d, err := time.ParseDuration(args[1])
			ts.Check(err)
			timeout = d
		case "-status":
			n, err := strconv.Atoi(args[1])
			ts.Check(err)
			status = n
		default:
			ts.Fatalf("waitfor: unknown option %s", args[0])
		}
		args = args[2:]
	}
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: waitfor [-timeout D] [-status N] URL [REGEXP]")
	}
	var re *regexp.Regexp
	if len(args) == 2 {
		re = regexp.MustCompile(args[1])
	}
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for {
		resp, err := c.Get(args[0])
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
			okStatus := resp.StatusCode/100 == 2
			if status != 0 {
				okStatus = resp.StatusCode == status
			}
			if okStatus && (re == nil || re.Match(b)) {
				fmt.Fprintf(ts.Stdout(), "%s\n", b)
				return
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			ts.Fatalf("waitfor %s: not ready after %s; last: %s", args[0], timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
