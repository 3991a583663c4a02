package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/limit"
)

const (
	// requestTimeout bounds one request of the load generator.
	requestTimeout = 10 * time.Second
	// responseBytesMax bounds the part of an answer the load generator reads.
	responseBytesMax = 1 << 20
	// transportErrorPause keeps a client whose requests fail at the transport (the server
	// died) from spinning on the CPU the rest of the run needs.
	transportErrorPause = time.Millisecond
	// shutdownMax bounds the trivial and http-ceiling servers' graceful shutdown.
	shutdownMax = 5 * time.Second
)

// orderRequest is the body of POST /v1/orders.
type orderRequest struct {
	UserID string        `json:"user_id"`
	Lines  []lineRequest `json:"lines"`
}

type lineRequest struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

// skuRequest is the body of POST /v1/skus.
type skuRequest struct {
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Price ordercore.Money `json:"price"`
	Stock int64           `json:"stock"`
}

// runHTTP measures POST /v1/orders against an ordercore server started by cfg.HTTP on a
// fresh data directory, from cfg.Clients connections on this machine.
func runHTTP(ctx context.Context, cfg Config, out *progress, sc scenario) (Result, error) {
	res := Result{Path: PathHTTP, Scenario: sc.name}
	dir, err := mkdir(cfg, PathHTTP, sc)
	if err != nil {
		return res, err
	}
	srv, err := cfg.HTTP(ctx, dir)
	if err != nil {
		return res, fmt.Errorf("start server: %w", err)
	}
	defer srv.Stop()
	base := strings.TrimSuffix(srv.Base, "/")
	client := newClient(cfg.Clients)
	defer client.CloseIdleConnections()
	out.linef("%s/%s: creating %d SKU(s) over HTTP", PathHTTP, sc.name, len(sc.skus))
	if err := createSKUsHTTP(ctx, client, base, sc.skus); err != nil {
		return res, err
	}
	return measureHTTP(ctx, cfg, out, res, client, base+"/v1/orders", sc, srv.Stats)
}

// runTrivial measures the same client against a handler that only decodes the request and
// answers 201: what the HTTP stack and JSON cost on this machine with nothing behind them.
func runTrivial(ctx context.Context, cfg Config, out *progress, sc scenario) (Result, error) {
	res := Result{Path: PathTrivial, Scenario: sc.name, Note: "handler only decodes the body and answers 201"}
	base, stop, err := serveOrders(trivialOrder)
	if err != nil {
		return res, err
	}
	defer stop()
	client := newClient(cfg.Clients)
	defer client.CloseIdleConnections()
	return measureHTTP(ctx, cfg, out, res, client, base+"/v1/orders", sc, nil)
}

// stats, if set, reads the server's committer counters for the batch figures.
func measureHTTP(ctx context.Context, cfg Config, out *progress, res Result, client *http.Client, url string, sc scenario, stats func() engine.Stats) (Result, error) {
	bodies := make([][]byte, len(sc.skus))
	for i, sku := range sc.skus {
		b, err := json.Marshal(orderRequest{UserID: userID, Lines: []lineRequest{{SKU: sku, Quantity: 1}}})
		limit.Assert(err == nil, "marshal order request: %v", err)
		bodies[i] = b
	}
	place := func(ctx context.Context, w *worker) error {
		body := bodies[0]
		if len(bodies) > 1 {
			body = bodies[w.rng.IntN(len(bodies))]
		}
		status, err := post(ctx, client, url, body, &w.buf)
		if err != nil {
			if ctx.Err() == nil {
				time.Sleep(transportErrorPause)
			}
			return err
		}
		if status != http.StatusCreated {
			return statusError{status}
		}
		return nil
	}
	var before, after engine.Stats
	var cpu0 cpuSample
	win, err := drive(ctx, cfg, out, res.Path+"/"+res.Scenario, place, func(open bool) {
		if open {
			cpu0 = readCPU()
		} else {
			res.CPU = cpu0.until(readCPU())
		}
		switch {
		case stats == nil:
		case open:
			before = stats()
		default:
			after = stats()
		}
	})
	if err != nil {
		return res, err
	}
	win.fill(&res)
	if stats != nil {
		batchStats(&res, before, after, win.seconds)
	}
	out.done(res)
	return res, nil
}

// newClient is the load generator's client: conns keep-alive connections to one host.
func newClient(conns int) *http.Client {
	tr := &http.Transport{
		Proxy:                 nil, // never through a proxy from the environment
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		MaxConnsPerHost:       conns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: requestTimeout,
		DisableCompression:    true,
	}
	return &http.Client{Transport: tr, Timeout: requestTimeout}
}

// post sends a JSON body and reads the whole answer (so that the connection is reused),
// returning its status. buf is scratch space reused between calls; header adds name, value
// pairs (a notification's signature).
func post(ctx context.Context, c *http.Client, url string, body []byte, buf *[]byte, header ...string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if *buf == nil {
		*buf = make([]byte, 0, 4096)
	}
	b := bytes.NewBuffer((*buf)[:0])
	if _, err := b.ReadFrom(io.LimitReader(resp.Body, responseBytesMax)); err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	*buf = b.Bytes()
	return resp.StatusCode, nil
}

// createSKUsHTTP creates the SKUs through POST /v1/skus.
func createSKUsHTTP(ctx context.Context, client *http.Client, base string, skus []string) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	return parallel(ctx, len(skus), func(ctx context.Context, i int) error {
		body, err := json.Marshal(skuRequest{ID: skus[i], Name: "bench " + skus[i], Price: price, Stock: stockPerSKU})
		limit.Assert(err == nil, "marshal sku request: %v", err)
		var buf []byte
		status, err := post(ctx, client, base+"/v1/skus", body, &buf)
		if err != nil {
			return fmt.Errorf("create sku %s: %w", skus[i], err)
		}
		if status/100 != 2 {
			return fmt.Errorf("create sku %s: HTTP %d: %.200s", skus[i], status, buf)
		}
		return nil
	})
}

// serveOrders serves order, as POST /v1/orders, on a free port of 127.0.0.1.
func serveOrders(order http.HandlerFunc) (baseURL string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/orders", order)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 1 << 16}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownMax)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-served // ErrServerClosed; an accept failure before it already showed as errors
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// trivialOrder decodes an order request the way an API handler must (bounded body) and
// answers 201 with a small JSON object, doing nothing else.
func trivialOrder(w http.ResponseWriter, r *http.Request) {
	var req orderRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit.RequestBodyBytesMax)).Decode(&req); err != nil || len(req.Lines) == 0 {
		http.Error(w, `{"code":"malformed_json"}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"id":%q,"status":"pending_payment"}`, ordercore.NewID(time.Now()))
}
