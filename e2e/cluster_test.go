package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for the consumer's inbox
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"ordercore"
	"ordercore/cli"
	"ordercore/natsbus"
)

// The multi-instance run (TestCluster).
const (
	clusterInstances  = 3
	clusterHotSKUs    = 3
	clusterHotStock   = 300
	clusterWorkers    = 12 // clients on the hot SKUs, spread over the instances
	clusterLoad       = 14 * time.Second
	clusterKillAt     = 3 * time.Second // a standby gets SIGKILL
	clusterKillLeader = 8 * time.Second // then the lease holder
	clusterDownFor    = time.Second     // before the killed instance is restarted
	clusterLeaseTTL   = "2s"
	// clusterExpiryTTL is the deadline of the orders that are left to the sweeper.
	clusterExpiryTTL = 2
	// clusterRetryMax bounds how long a client retries one keyed request over the
	// instances before the test gives up on the cluster.
	clusterRetryMax = 60 * time.Second
	// clusterSettleMax bounds the wait for sweepers, relay and consumer to settle.
	clusterSettleMax = 60 * time.Second
	// clusterAckWait is the consumer's redelivery delay after its restart.
	clusterAckWait = 2 * time.Second
)

// TestCluster runs three `ordercore serve` processes on one PostgreSQL schema and one
// NATS stream, spreads load over all three on a few hot SKUs, SIGKILLs a standby and later
// the lease holder mid-run and restarts them, and restarts the event consumer too. Then:
//   - zero oversell, and each SKU's sold units equal the units of the orders clients paid;
//   - every order answered 201 exists, and every order is completed or cancelled once the
//     sweepers settle (the unpaid ones expire);
//   - the per-SKU history of reservations, releases, commits and stock reads that the
//     clients saw is linearizable (porcupine);
//   - every event of the events table reached the stream, once per event id, and the inbox
//     consumer applied each exactly once;
//   - `ordercore verify` passes on the database.
func TestCluster(t *testing.T) {
	c := newCluster(t)
	c.seed()
	consumer := c.startConsumer()

	ctx, stopLoad := context.WithTimeout(t.Context(), clusterLoad)
	defer stopLoad()
	var wg sync.WaitGroup
	for i := range clusterWorkers {
		wg.Go(func() { c.hotClient(ctx, i) })
	}
	wg.Go(func() { c.expiryClient(ctx) })
	wg.Go(func() { c.nemesis(ctx, &consumer) })
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("load: %d orders placed on the hot SKUs (%d refused for stock), %d paid, %d cancelled, %d left to expire; %d requests retried on another instance; kills: %s",
		c.placed.Load(), c.refused.Load(), c.paid.Load(), c.cancelled.Load(), c.expiring.Load(), c.retried.Load(), strings.Join(c.kills, ", "))

	c.settle()
	c.checkOrders()
	c.checkStock()
	c.checkLinearizable()
	c.checkEvents(consumer)
	c.verify()
}

type cluster struct {
	t        *testing.T
	dbURL    string // with ?schema=
	schema   string
	pg       *pgx.Conn
	natsURL  string
	js       jetstream.JetStream
	stream   string
	subjects string
	args     []string

	mu    sync.Mutex
	nodes [clusterInstances]*server
	kills []string

	hist    historyLog
	ordersM sync.Mutex
	orders  map[string]*clusterOrder // every order answered 201, by id

	placed, refused, paid, cancelled, expiring, retried atomic.Int64
}

type clusterOrder struct {
	id       string
	sku      string
	qty      int64
	expiring bool   // left to the sweeper
	final    string // the status the client moved it to ("" if left to expire)
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{t: t, orders: map[string]*clusterOrder{}}
	var b [5]byte
	rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	c.schema = "cluster_" + suffix
	c.stream = "CLUSTER_" + strings.ToUpper(suffix)
	c.subjects = "cluster" + suffix + ".events"

	dsn := testPG()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	pg, err := pgx.Connect(ctx, dsn)
	if err != nil {
		unavailable(t, "PostgreSQL at %s (ORDERCORE_TEST_PG): %v", dsn, err)
	}
	c.pg = pg
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pg.Exec(ctx, "DROP SCHEMA IF EXISTS "+c.schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", c.schema, err)
		}
		if _, err := pg.Exec(ctx, "DROP SCHEMA IF EXISTS "+c.schema+"_consumer CASCADE"); err != nil {
			t.Errorf("drop schema %s_consumer: %v", c.schema, err)
		}
		pg.Close(ctx)
	})
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	c.dbURL = dsn + sep + "schema=" + c.schema

	c.natsURL = testNATS()
	nc, err := nats.Connect(c.natsURL, nats.Timeout(3*time.Second))
	if err != nil {
		unavailable(t, "NATS at %s (ORDERCORE_TEST_NATS): %v", c.natsURL, err)
	}
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // the stream reserves JetStream storage: never leave one behind
		if err := c.js.DeleteStream(context.Background(), c.stream); err != nil {
			t.Errorf("delete stream %s: %v", c.stream, err)
		}
		nc.Close()
	})

	c.args = []string{"--db", c.dbURL, "--nats", c.natsURL, "--nats-stream", c.stream, "--nats-subjects", c.subjects,
		"--lease-ttl", clusterLeaseTTL, "--manual-payments", "--log-level", "warn"}
	for i := range c.nodes {
		c.nodes[i] = startServer(t, filepath.Join(t.TempDir(), fmt.Sprint(i)), c.args...)
	}
	return c
}

// unavailable skips the test when a service it needs is not there, or fails it under
// CI=true, where the services are meant to be up.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+" (skipping; set CI=true to fail instead)", args...)
}

func testPG() string {
	if u := os.Getenv("ORDERCORE_TEST_PG"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

func testNATS() string {
	if u := os.Getenv("ORDERCORE_TEST_NATS"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

func clusterHotSKU(i int) string { return fmt.Sprintf("hot-%d", i) }

const clusterExpirySKU = "exp"

func (c *cluster) seed() {
	a := c.node(0).api
	for i := range clusterHotSKUs {
		c.must(a.do(http.MethodPost, "/v1/skus", createSKUReq{ID: clusterHotSKU(i), Name: "Hot", Price: wireMoney{1000, currencyUSD}, Stock: clusterHotStock}, "seed-"+clusterHotSKU(i)))
	}
	c.must(a.do(http.MethodPost, "/v1/skus", createSKUReq{ID: clusterExpirySKU, Name: "Expiring", Price: wireMoney{500, currencyUSD}, Stock: 1_000_000}, "seed-exp"))
}

func (c *cluster) must(r reply, err error) {
	c.t.Helper()
	if err != nil || r.status/100 != 2 {
		c.t.Fatalf("seed: %v %v", r, err)
	}
}

func (c *cluster) node(i int) *server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i%clusterInstances]
}

// call sends one keyed request, starting at instance `at`, and retries it on the next
// instance while the answer is not definitive: no answer (the instance died), 5xx, or 409
// idempotency_key_in_use (the first attempt still runs somewhere). The key makes the
// retries one request: the answer is the first execution's.
func (c *cluster) call(at int, method, path string, body any, key string) (reply, bool) {
	deadline := time.Now().Add(clusterRetryMax)
	for attempt := 0; ; attempt++ {
		r, err := c.node(at+attempt).api.do(method, path, body, key)
		definitive := err == nil && r.status < 500 && !(r.status == http.StatusConflict && r.problem().Code == "idempotency_key_in_use")
		if definitive {
			if attempt > 0 {
				c.retried.Add(1)
			}
			return r, true
		}
		if time.Now().After(deadline) {
			c.t.Errorf("%s %s (key %s): no definitive answer from any instance within %v; last: %v %v", method, path, key, clusterRetryMax, r, err)
			return r, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hotClient places single-line orders on the hot SKUs and pays (then ships and
// completes) or cancels each, reading a SKU's stock now and then; every step goes into
// the SKU's history.
func (c *cluster) hotClient(ctx context.Context, id int) {
	rng := mrand.New(mrand.NewPCG(uint64(id), 42))
	for n := 0; ctx.Err() == nil && !c.t.Failed(); n++ {
		at := rng.IntN(clusterInstances)
		sku := clusterHotSKU(rng.IntN(clusterHotSKUs))
		if rng.IntN(5) == 0 {
			start := c.hist.now()
			var s wireSKU
			if err := c.node(at).api.getJSON("/v1/skus/"+sku, &s); err != nil {
				continue // a dead instance: a read with no answer tells nothing
			}
			c.hist.add(sku, id, stockOp{Kind: opRead}, stockOut{Avail: s.Available, Reserved: s.Reserved, Sold: s.Sold}, start)
			continue
		}
		qty := int64(1 + rng.IntN(3))
		key := fmt.Sprintf("c%d-%d", id, n)
		start := c.hist.now()
		r, ok := c.call(at, http.MethodPost, "/v1/orders", placeReq{UserID: fmt.Sprintf("u%d", id), Lines: []lineReq{{sku, qty}}, ExpiresInSeconds: 3600}, key+"-place")
		if !ok {
			return
		}
		switch {
		case r.status == http.StatusCreated:
			var o wireOrder
			if err := json.Unmarshal(r.body, &o); err != nil || o.ID == "" {
				c.t.Errorf("place: %v (%v)", r, err)
				return
			}
			c.hist.add(sku, id, stockOp{Kind: opReserve, Qty: qty}, stockOut{OK: true}, start)
			c.placed.Add(1)
			co := &clusterOrder{id: o.ID, sku: sku, qty: qty}
			c.ordersM.Lock()
			c.orders[o.ID] = co
			c.ordersM.Unlock()
			c.finish(rng, at, id, co, key)
		case r.status == http.StatusConflict && r.problem().Code == "insufficient_stock":
			c.hist.add(sku, id, stockOp{Kind: opReserve, Qty: qty}, stockOut{OK: false}, start)
			c.refused.Add(1)
		default:
			c.t.Errorf("place %s x%d: %v", sku, qty, r)
			return
		}
	}
}

// finish pays or cancels a placed order, through any instance.
func (c *cluster) finish(rng *mrand.Rand, at, id int, o *clusterOrder, key string) {
	start := c.hist.now()
	if rng.IntN(2) == 0 {
		r, ok := c.call(at+1, http.MethodPost, "/v1/orders/"+o.id+"/cancel", nil, key+"-cancel")
		if !ok {
			return
		}
		if r.status != http.StatusOK {
			c.t.Errorf("cancel %s: %v", o.id, r)
			return
		}
		c.hist.add(o.sku, id, stockOp{Kind: opRelease, Qty: o.qty}, stockOut{OK: true}, start)
		c.cancelled.Add(1)
		o.final = statusCancelled
		return
	}
	r, ok := c.call(at+1, http.MethodPost, "/v1/orders/"+o.id+"/payments/manual",
		manualPaymentReq{Amount: wireMoney{1000 * o.qty, currencyUSD}, Reference: "cluster-" + o.id}, key+"-pay")
	if !ok {
		return
	}
	if r.status != http.StatusOK {
		c.t.Errorf("pay %s: %v", o.id, r)
		return
	}
	c.hist.add(o.sku, id, stockOp{Kind: opCommit, Qty: o.qty}, stockOut{OK: true}, start)
	c.paid.Add(1)
	for _, step := range []string{"ship", "complete"} {
		r, ok := c.call(at+2, http.MethodPost, "/v1/orders/"+o.id+"/"+step, nil, key+"-"+step)
		if !ok {
			return
		}
		if r.status != http.StatusOK {
			c.t.Errorf("%s %s: %v", step, o.id, r)
			return
		}
	}
	o.final = "completed"
}

// expiryClient places orders with a short deadline and never pays them: the sweepers
// (on whichever instance holds the lease) must close every one.
func (c *cluster) expiryClient(ctx context.Context) {
	for n := 0; ctx.Err() == nil && !c.t.Failed(); n++ {
		r, ok := c.call(n, http.MethodPost, "/v1/orders", placeReq{UserID: "expiring", Lines: []lineReq{{clusterExpirySKU, 1}}, ExpiresInSeconds: clusterExpiryTTL}, fmt.Sprintf("exp-%d", n))
		if !ok {
			return
		}
		var o wireOrder
		if r.status != http.StatusCreated || json.Unmarshal(r.body, &o) != nil {
			c.t.Errorf("place an expiring order: %v", r)
			return
		}
		c.ordersM.Lock()
		c.orders[o.ID] = &clusterOrder{id: o.ID, sku: clusterExpirySKU, qty: 1, expiring: true}
		c.ordersM.Unlock()
		c.expiring.Add(1)
		time.Sleep(20 * time.Millisecond)
	}
}

// nemesis SIGKILLs a standby, then the lease holder, each restarted after clusterDownFor,
// and restarts the event consumer between the two.
func (c *cluster) nemesis(ctx context.Context, consumer **clusterConsumer) {
	began := time.Now()
	wait := func(at time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Until(began.Add(at))):
			return true
		}
	}
	if !wait(clusterKillAt) {
		return
	}
	leader := c.leader()
	c.killAndRestart((leader+1)%clusterInstances, "standby")
	if !wait((clusterKillAt + clusterKillLeader) / 2) {
		return
	}
	(*consumer).stop()
	*consumer = c.startConsumer()
	if !wait(clusterKillLeader) {
		return
	}
	leader = c.leader()
	if leader < 0 {
		c.t.Errorf("no instance reports itself leader %v after the start", time.Since(began))
		return
	}
	c.killAndRestart(leader, "leader")
}

// leader is the index of the instance whose /healthz says "leader", or -1.
func (c *cluster) leader() int {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i := range clusterInstances {
			var h struct{ Role string }
			if c.node(i).api.getJSON("/healthz", &h) == nil && h.Role == "leader" {
				return i
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return -1
}

func (c *cluster) killAndRestart(i int, what string) {
	s := c.node(i)
	if err := s.kill(); err != nil {
		c.t.Errorf("kill instance %d: %v", i, err)
	}
	c.mu.Lock()
	c.kills = append(c.kills, fmt.Sprintf("%s (instance %d)", what, i))
	c.mu.Unlock()
	time.Sleep(clusterDownFor)
	fresh := startServer(c.t, filepath.Join(c.t.TempDir(), fmt.Sprint(i)), c.args...)
	c.mu.Lock()
	c.nodes[i] = fresh
	c.mu.Unlock()
}

// settle waits until no order is pending payment: the sweeper on the current lease holder
// closed every expiring one.
func (c *cluster) settle() {
	deadline := time.Now().Add(clusterSettleMax)
	for {
		var pending int
		if err := c.pg.QueryRow(c.t.Context(), "SELECT count(*) FROM "+c.schema+".orders WHERE status = $1", statusPending).Scan(&pending); err != nil {
			c.t.Fatal(err)
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%d orders still pending payment %v after the load ended (expiry deadline %ds)", pending, clusterSettleMax, clusterExpiryTTL)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkOrders: every order answered 201 exists, in the status its client moved it to, or
// expired; no order of the database is outside the terminal statuses.
func (c *cluster) checkOrders() {
	a := c.node(0).api
	var wrong []string
	for _, o := range c.orders {
		var got wireOrder
		if err := a.getJSON("/v1/orders/"+o.id, &got); err != nil {
			wrong = append(wrong, fmt.Sprintf("%s: %v", o.id, err))
			continue
		}
		want := o.final
		if o.expiring {
			want = statusCancelled
		}
		if got.Status != want || len(got.Lines) != 1 || got.Lines[0].SKU != o.sku || got.Lines[0].Quantity != o.qty {
			wrong = append(wrong, fmt.Sprintf("%s: %s %v, want %s %s x%d", o.id, got.Status, got.Lines, want, o.sku, o.qty))
		}
	}
	if len(wrong) > 0 {
		c.t.Errorf("%d of %d orders answered 201 are missing or wrong, e.g. %v", len(wrong), len(c.orders), wrong[:min(5, len(wrong))])
	}
	rows, err := c.pg.Query(c.t.Context(), "SELECT status, count(*) FROM "+c.schema+".orders GROUP BY status ORDER BY status")
	if err != nil {
		c.t.Fatal(err)
	}
	counts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var s string
		var n int
		err := r.Scan(&s, &n)
		return fmt.Sprintf("%s=%d", s, n), err
	})
	if err != nil {
		c.t.Fatal(err)
	}
	var total int
	for _, kv := range counts {
		s, n, _ := strings.Cut(kv, "=")
		var k int
		fmt.Sscan(n, &k)
		total += k
		if s != "completed" && s != statusCancelled {
			c.t.Errorf("%s orders are %s after the sweepers settled: every order must end completed or cancelled", n, s)
		}
	}
	if total != len(c.orders) {
		c.t.Errorf("the database holds %d orders, the clients were answered 201 for %d", total, len(c.orders))
	}
	c.t.Logf("orders by status: %s", strings.Join(counts, ", "))
}

// checkStock: no oversell, and each hot SKU's sold units are the units the clients paid.
func (c *cluster) checkStock() {
	a := c.node(1).api
	paid := map[string]int64{}
	for _, o := range c.orders {
		if o.final == "completed" {
			paid[o.sku] += o.qty
		}
	}
	for i := range clusterHotSKUs {
		var s wireSKU
		if err := a.getJSON("/v1/skus/"+clusterHotSKU(i), &s); err != nil {
			c.t.Fatal(err)
		}
		if s.Sold+s.Reserved > s.Total || s.Available < 0 {
			c.t.Errorf("%s oversold: %+v", s.ID, s)
		}
		if s.Sold != paid[s.ID] || s.Reserved != 0 || s.Total != clusterHotStock {
			c.t.Errorf("%s: total %d reserved %d sold %d; the clients paid for %d units of %d", s.ID, s.Total, s.Reserved, s.Sold, paid[s.ID], clusterHotStock)
		}
	}
}

func (c *cluster) checkLinearizable() {
	ops := c.hist.operations()
	res, info := porcupine.CheckOperationsVerbose(stockModel(clusterHotStock), ops, time.Minute)
	c.t.Logf("porcupine: %d operations over %d SKUs: %s", len(ops), clusterHotSKUs, res)
	if res != porcupine.Ok {
		path := filepath.Join(os.TempDir(), c.schema+"-history.html")
		if err := porcupine.VisualizePath(stockModel(clusterHotStock), info, path); err == nil {
			c.t.Logf("history visualized in %s", path)
		}
		c.t.Errorf("the per-SKU stock history is %s, want Ok (linearizable)", res)
	}
}

// checkEvents: the stream holds every event of the events table once (by Nats-Msg-Id),
// and the consumer applied each exactly once.
func (c *cluster) checkEvents(consumer *clusterConsumer) {
	ctx := c.t.Context()
	var events int64
	if err := c.pg.QueryRow(ctx, "SELECT count(*) FROM "+c.schema+".events").Scan(&events); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(clusterSettleMax)
	var msgs uint64
	var applied int64
	for {
		s, err := c.js.Stream(ctx, c.stream)
		if err != nil {
			c.t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			c.t.Fatal(err)
		}
		msgs = info.State.Msgs
		if err := c.pg.QueryRow(ctx, "SELECT count(*) FROM "+c.schema+"_consumer.applied").Scan(&applied); err != nil {
			c.t.Fatal(err)
		}
		if msgs >= uint64(events) && applied >= events || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	consumer.stop()
	if msgs != uint64(events) {
		c.t.Errorf("the stream holds %d messages for %d events: want one per event", msgs, events)
	}
	// Every event id of the table was applied, and exactly once.
	ids := map[string]bool{}
	rows, err := c.pg.Query(ctx, "SELECT id FROM "+c.schema+".events")
	if err != nil {
		c.t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			c.t.Fatal(err)
		}
		ids[id] = true
	}
	rows.Close()
	arows, err := c.pg.Query(ctx, "SELECT event_id, times FROM "+c.schema+"_consumer.applied")
	if err != nil {
		c.t.Fatal(err)
	}
	defer arows.Close()
	var twice, unknown []string
	seen := 0
	for arows.Next() {
		var id string
		var times int
		if err := arows.Scan(&id, &times); err != nil {
			c.t.Fatal(err)
		}
		seen++
		if times != 1 {
			twice = append(twice, fmt.Sprintf("%s x%d", id, times))
		}
		if !ids[id] {
			unknown = append(unknown, id)
		}
		delete(ids, id)
	}
	if len(ids) > 0 || len(twice) > 0 || len(unknown) > 0 {
		c.t.Errorf("consumer: %d of %d events never applied, %d applied more than once (%v), %d not in the table", len(ids), events, len(twice), twice[:min(5, len(twice))], len(unknown))
	}
	c.t.Logf("events: %d in the table, %d in the stream, %d applied by the consumer (%d handler calls, restarted once)", events, msgs, seen, consumer.deliveries.Load())
}

func (c *cluster) verify() {
	var out, errb bytes.Buffer
	if code := cli.Main(c.t.Context(), []string{"verify", "--db", c.dbURL}, &out, &errb); code != 0 {
		c.t.Errorf("ordercore verify exited %d:\n%s%s", code, out.String(), errb.String())
	}
}

// clusterConsumer is another service reading the stream: a durable pull consumer with an
// inbox in its own schema, counting how many times each event was applied.
type clusterConsumer struct {
	db         *sql.DB
	nc         *nats.Conn
	cancel     context.CancelFunc
	done       chan struct{}
	deliveries *atomic.Int64
}

var consumerDeliveries atomic.Int64

func (c *cluster) startConsumer() *clusterConsumer {
	dsn := testPG()
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	db, err := sql.Open("pgx", dsn+sep+"search_path="+c.schema+"_consumer")
	if err != nil {
		c.t.Fatal(err)
	}
	ctx := c.t.Context()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+c.schema+"_consumer"); err != nil {
		c.t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS applied (event_id TEXT PRIMARY KEY, times INT NOT NULL)"); err != nil {
		c.t.Fatal(err)
	}
	nc, err := nats.Connect(c.natsURL)
	if err != nil {
		c.t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	cc := &clusterConsumer{db: db, nc: nc, cancel: cancel, done: make(chan struct{}), deliveries: &consumerDeliveries}
	go func() {
		defer close(cc.done)
		// The stream exists once the first relay started; until then Consume is retried.
		for cctx.Err() == nil {
			err := natsbus.Consume(cctx, js, natsbus.ConsumerConfig{Stream: c.stream, Durable: "cluster-test", DB: db, AckWait: clusterAckWait},
				func(ctx context.Context, tx *sql.Tx, ev ordercore.CloudEvent) error {
					cc.deliveries.Add(1)
					// Not idempotent on purpose: a second application shows as times = 2.
					_, err := tx.ExecContext(ctx, `INSERT INTO applied (event_id, times) VALUES ($1, 1)
						ON CONFLICT (event_id) DO UPDATE SET times = applied.times + 1`, ev.ID)
					return err
				})
			if err == nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return cc
}

func (cc *clusterConsumer) stop() {
	cc.cancel()
	<-cc.done
	cc.nc.Close()
	cc.db.Close()
}
