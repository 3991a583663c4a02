// Package httpapi is ordercore's REST API: huma operations on a net/http ServeMux, with the
// OpenAPI 3.1 document at /openapi.json and every error an RFC 9457 problem with a stable
// code. It decodes and validates requests, applies Idempotency-Key, submits commands to
// the engine and reads from the store's read side; it holds no state of its own beyond the
// in-flight key set.
//
// It imports the root package, the engine, internal/idem and internal/limit, and the public
// barrier package for DTM's branch parameters (tcc.go); never another adapter.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/idem"
	"ordercore/internal/limit"
)

func init() {
	huma.NewError = humaError
	// Field names are matched exactly, as the schema spells them: with huma's default,
	// "ID" or "Order_ID" passed for "id" or "order_id", and a case variant could carry a
	// value past the checks the schema puts on the field it was taken for.
	huma.ValidateStrictCasing = true
}

// Config wires the API to the engine and the read side.
type Config struct {
	Engine *engine.Engine
	Reader ordercore.Reader
	Clock  ordercore.Clock
	// ManualPayments enables POST /v1/orders/{id}/payments/manual, which marks an order
	// paid on an operator's word (bank transfer, cash on delivery). Off by default.
	ManualPayments bool
	// Payments is the channel side of payments; nil serves no payment routes' channel
	// calls (they answer unknown_channel).
	Payments *engine.Payments
	Version  string
	// Sagas runs sagas submitted here at once. Without it, submitted sagas wait for a
	// claim.
	Sagas SagaStarter
	// Recon runs and reads daily statement reconciliations; nil answers
	// unknown_channel.
	Recon Reconciler
	// Role, when set, names what this instance does besides serving the API ("single",
	// "leader" or "standby"); /healthz reports it.
	Role func() string
	// Metrics, when set, is served at GET /metrics (Prometheus's exposition).
	Metrics http.Handler
	// UserOrders, when set, limits how often one user_id may place orders: a request
	// it refuses is 429 rate_limited with Retry-After, and reaches nothing else.
	UserOrders RateLimiter
}

// RateLimiter lets a key's request through, or says how long until it would
// (guard.KeyLimiter); giveBack returns the token of a request that cost nothing.
type RateLimiter interface {
	Take(key string, now time.Time) (ok bool, wait time.Duration, giveBack func())
}

// Server is the HTTP API.
type Server struct {
	cfg         Config
	mux         *http.ServeMux
	api         huma.API
	inFlight    idem.InFlight
	notifyStats notifyStats
}

// New builds the API's handler.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	hc := huma.DefaultConfig("ordercore", cfg.Version)
	hc.Info.Description = "Orders, two-phase stock reservations and the events they emit."
	hc.DocsPath = "/docs"
	hc.OpenAPIPath = "/openapi"
	// No "$schema" link in every body: clients have /openapi.json, and the transform
	// costs each response a reflection pass and a larger body.
	hc.CreateHooks = nil
	s.api = humago.New(s.mux, hc)
	s.routes()
	s.documentHandRouted()
	return s
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// An empty or repeated Idempotency-Key would otherwise read as no key at all, and
	// the request would run unprotected by the key its client meant to send.
	if ks, ok := r.Header["Idempotency-Key"]; ok && (len(ks) != 1 || ks[0] == "") {
		s.refuse(w, r, ordercore.Errorf(ordercore.EInvalidIdemKey, "Idempotency-Key must be sent once, with a value"))
		return
	}
	// No resource is named by a path that is not UTF-8 text: every id is validated as
	// text when it is created. Answered here, such a path never reaches a store, where
	// PostgreSQL would refuse the bytes with an error instead of finding nothing.
	if p := r.URL.Path; !utf8.ValidString(p) || strings.ContainsRune(p, 0) {
		s.refuse(w, r, ordercore.Errorf(ordercore.ENOTFOUND, "no resource at a path that is not UTF-8 text"))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != strings.ToLower(ct) {
		r.Header.Set("Content-Type", strings.ToLower(ct)) // media types are case-insensitive (RFC 9110 8.3.1)
	}
	if err := checkUTF8Body(w, r); err != nil {
		s.refuse(w, r, err)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// refuse answers a request turned away before the mux, naming the route it was for on
// the request as the mux would (the metrics count it under that route).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if _, pattern := s.mux.Handler(r); pattern != "/" {
		r.Pattern = pattern
	}
	writeProblem(w, problemOf(err))
}

// checkUTF8Body refuses a JSON body that is not UTF-8: Go's decoder would take each
// invalid byte as U+FFFD, and store text the client never sent. The body is read (up to
// the API's limit; past it, what is left follows, for the operation's own 413) and put
// back for the handler. Notifications are left alone: they are verified from their raw
// bytes, and their channel's decoder judges them. So are DTM's endpoints and the stock's
// TCC branches, whose callers read refusals in DTM's shape (409 FAILURE), not as
// problems; the ids they take from a body are checked there.
//
// Once the handler has read the body put back to its end, the connection's read
// deadline is lifted (liftingBody).
func checkUTF8Body(w http.ResponseWriter, r *http.Request) error {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	for _, own := range []string{"/v1/channels/", DTMPrefix + "/", TCCStockPrefix + "/"} {
		if strings.HasPrefix(r.URL.Path, own) {
			return nil
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit.RequestBodyBytesMax+1))
	if err != nil {
		return ordercore.Errorf(ordercore.EMalformedJSON, "read body: %v", err)
	}
	if len(body) <= limit.RequestBodyBytesMax && !utf8.Valid(body) {
		return ordercore.Errorf(ordercore.EMalformedJSON, "the body is not valid UTF-8")
	}
	if len(body) <= limit.RequestBodyBytesMax {
		if name, dup := duplicateKey(body); dup {
			return ordercore.Errorf(ordercore.EMalformedJSON, "the name %q appears twice in one object: which one is meant is ambiguous", name)
		}
	}
	r.Body = &liftingBody{Reader: io.MultiReader(bytes.NewReader(body), r.Body), Closer: r.Body, w: w}
	return nil
}

// liftingBody is a request body that lifts the connection's read deadline once it has
// been read to its end. huma sets a read deadline of 5 s for reading a body and leaves
// it; once the body is read, net/http reads the connection in the background to notice
// a client that goes away, and when that read's deadline passes it cancels the request's
// context. A request whose answer took longer than 5 s (a batch waiting on a row lock,
// a slow commit) was then answered 500 while its command went on to commit. With
// nothing left to read, there is no slow client to guard against.
type liftingBody struct {
	io.Reader
	io.Closer
	w      http.ResponseWriter
	lifted bool
}

func (b *liftingBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF && !b.lifted {
		b.lifted = true
		_ = http.NewResponseController(b.w).SetReadDeadline(time.Time{}) // not every writer supports it
	}
	return n, err
}

// noRoute answers what no route takes as a problem too: 405 with Allow when the path
// takes other methods, 404 otherwise.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	probe := *r
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe.Method = m
		if _, pattern := s.mux.Handler(&probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		writeProblem(w, problemOf(ordercore.Errorf(ordercore.ENOTFOUND, "no resource at %s", r.URL.Path)))
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeProblem(w, problemOf(ordercore.Errorf(ordercore.EMethodNotAllowed, "%s takes %s, not %s", r.URL.Path, strings.Join(allow, ", "), r.Method)))
}

// extendDeadlines lets a request that waits for a saga (wait_seconds, DTM's
// wait_result), or for a reconciliation, answer after its wait. The server's timeouts stay
// short for every other request, so a slow client still cannot hold a connection long;
// only these requests, whose wait the API bounds, get deadlines of their own: the wait and
// a margin for the answer. Both deadlines matter: without the write deadline the
// connection was cut at WriteTimeout with no answer, and when the read deadline (huma's
// 5 s for reading a body, the server's ReadTimeout) passes while the handler waits,
// net/http cancels the request's context, which ended every wait after 5 s. It must be
// called once the body has been read.
func extendDeadlines(w http.ResponseWriter, wait time.Duration) {
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(wait + writeMargin)
	_ = rc.SetReadDeadline(deadline) // not every writer supports them
	_ = rc.SetWriteDeadline(deadline)
}

// waitKey holds, in the context of an operation that may wait, the function that gives
// its connection the deadlines of a wait (waitDeadlines).
type waitKey struct{}

// waitDeadlines is the middleware of the operations that may wait: huma reads the body
// after the middlewares, so the handler extends the deadlines (extendWait) once it has its
// input.
func waitDeadlines(ctx huma.Context, next func(huma.Context)) {
	_, w := humago.Unwrap(ctx)
	next(huma.WithValue(ctx, waitKey{}, func(wait time.Duration) { extendDeadlines(w, wait) }))
}

// extendWait gives the request of ctx the deadlines of a wait of at most wait; it does
// nothing outside waitDeadlines.
func extendWait(ctx context.Context, wait time.Duration) {
	if f, ok := ctx.Value(waitKey{}).(func(time.Duration)); ok {
		f(wait)
	}
}

// writeMargin is added to a wait for the answer that follows it.
const writeMargin = 10 * time.Second

// API exposes the huma API (for the OpenAPI document in tests and docs).
func (s *Server) API() huma.API { return s.api }

// errorStatuses are the problem answers the OpenAPI document lists for an operation
// (huma adds 422 and 500): any request may be 400 (a repeated Idempotency-Key, a
// malformed cursor or body) or 503 (overloaded, storage unavailable); one that names a
// resource in its path may be 404; a POST may also be 409 (idempotency_key_in_use, and
// its operation's own conflicts), 413 and 415. Operations with more add them.
func errorStatuses(method, path string) []int {
	out := []int{http.StatusBadRequest, http.StatusServiceUnavailable}
	if strings.Contains(path, "{") {
		out = append(out, http.StatusNotFound)
	}
	if method == http.MethodPost {
		out = append(out, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType)
	}
	return out
}

// bodyBytesMax is the MaxBodyBytes of every operation: huma refuses a body that fills
// its limit, and a body of exactly limit.RequestBodyBytesMax is allowed.
const bodyBytesMax = limit.RequestBodyBytesMax + 1

func (s *Server) routes() {
	post := func(id, path, summary string, status int) huma.Operation {
		return huma.Operation{OperationID: id, Method: http.MethodPost, Path: path, Summary: summary,
			DefaultStatus: status, MaxBodyBytes: bodyBytesMax, Errors: errorStatuses(http.MethodPost, path)}
	}
	get := func(id, path, summary string) huma.Operation {
		return huma.Operation{OperationID: id, Method: http.MethodGet, Path: path, Summary: summary, Errors: errorStatuses(http.MethodGet, path)}
	}
	huma.Register(s.api, post("create-sku", "/v1/skus", "Create a SKU with its initial stock", http.StatusCreated), s.createSKU)
	huma.Register(s.api, get("get-sku", "/v1/skus/{id}", "Read a SKU and its stock balance"), s.getSKU)
	huma.Register(s.api, post("restock-sku", "/v1/skus/{id}/restock", "Add stock to a SKU", http.StatusOK), s.restock)
	placeOrder := post("place-order", "/v1/orders", "Place an order and reserve its stock", http.StatusCreated)
	placeOrder.Errors = append(placeOrder.Errors, http.StatusTooManyRequests) // serve --user-order-rate
	huma.Register(s.api, placeOrder, s.placeOrder)
	huma.Register(s.api, get("get-order", "/v1/orders/{id}", "Read an order with its event timeline"), s.getOrder)
	huma.Register(s.api, get("list-orders", "/v1/orders", "List a user's orders, newest first"), s.listOrders)
	huma.Register(s.api, post("cancel-order", "/v1/orders/{id}/cancel", "Cancel an unpaid order and release its stock", http.StatusOK), s.transition(orderCancel))
	huma.Register(s.api, post("ship-order", "/v1/orders/{id}/ship", "Mark a paid order shipped", http.StatusOK), s.transition(orderShip))
	huma.Register(s.api, post("complete-order", "/v1/orders/{id}/complete", "Mark a shipped order completed", http.StatusOK), s.transition(orderComplete))
	if s.cfg.ManualPayments {
		huma.Register(s.api, post("manual-payment", "/v1/orders/{id}/payments/manual", "Record a payment received outside any channel", http.StatusOK), s.manualPayment)
	}
	pay := post("pay-order", "/v1/orders/{id}/payments", "Open a payment attempt at a channel", http.StatusCreated)
	pay.Errors = append(pay.Errors, http.StatusBadGateway) // channel_refused
	huma.Register(s.api, pay, s.pay)
	huma.Register(s.api, get("list-order-payments", "/v1/orders/{id}/payments", "An order's payment attempts and refunds"), s.orderPayments)
	refund := post("refund-order", "/v1/orders/{id}/refunds", "Refund part or all of an order's payment", http.StatusCreated)
	refund.Errors = append(refund.Errors, http.StatusBadGateway) // channel_refused
	huma.Register(s.api, refund, s.requestRefund)
	huma.Register(s.api, get("list-review-items", "/v1/review-items", "Cases waiting for an operator, newest first"), s.listReviews)
	huma.Register(s.api, get("get-review-item", "/v1/review-items/{id}", "Read one review item with its evidence"), s.getReview)
	huma.Register(s.api, post("resolve-review-item", "/v1/review-items/{id}/resolve", "Resolve a review item (audited)", http.StatusOK), s.resolveReview)
	huma.Register(s.api, get("list-channels", "/v1/channels", "Configured payment channels and their notification counts"), s.listChannels)
	s.mux.HandleFunc("POST /v1/channels/{channel}/notify", s.notify)
	runRecon := post("run-reconciliation", "/v1/reconciliations", "Reconcile a channel's daily statement now (safe to repeat)", http.StatusCreated)
	// The channel is named in the body (404 unknown_channel); the run takes no key, and
	// repeating it is safe (no 409).
	runRecon.Errors = []int{http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusServiceUnavailable}
	runRecon.Description = "Fetches the channel's statement of the day and matches it with ordercore's records both ways: " +
		"money ordercore missed is applied through the channel's own path (repaired), money on trades or refunds it does not know opens an " +
		"orphan_notification review item, money it recorded that the statement does not list is asked about at the channel, and every " +
		"other difference opens a recon_* review item once. Errors: 404 unknown_channel; 422 statements_unsupported, invalid_request " +
		"(a day not begun, or more than 400 days before today); 400 invalid_idempotency_key (the operation takes no key); 503 " +
		"channel_unavailable (the statement or a query got no answer: no report is recorded, what was applied stands) or unavailable."
	runRecon.Middlewares = huma.Middlewares{waitDeadlines}
	huma.Register(s.api, runRecon, s.runRecon)
	getRecon := get("get-reconciliation", "/v1/reconciliations/{channel}/{day}", "The latest reconciliation of a channel's day")
	getRecon.Description = "The report of the day's latest run (the data of its reconciliation.completed event). " +
		"Errors: 404 unknown_channel, not_found (no run recorded); 422 invalid_request (not a date)."
	huma.Register(s.api, getRecon, s.getRecon)
	huma.Register(s.api, get("list-events", "/v1/events", "The event feed, in commit order"), s.listEvents)
	submitSaga := post("submit-saga", "/v1/sagas", "Submit a saga or TCC transaction of HTTP or in-process steps", http.StatusCreated)
	submitSaga.Middlewares = huma.Middlewares{waitDeadlines}
	huma.Register(s.api, submitSaga, s.submitSaga)
	// A saga that ended within its submit (steps in process only) or within wait_seconds
	// answers 200 with the same body as the 201 of one still running.
	if op := s.api.OpenAPI().Paths["/v1/sagas"].Post; op != nil && op.Responses["201"] != nil {
		op.Responses["200"] = &huma.Response{Description: "The saga ended within the submit or its wait_seconds",
			Headers: op.Responses["201"].Headers, Content: op.Responses["201"].Content}
	}
	huma.Register(s.api, get("list-saga-locals", "/v1/sagas/locals", "In-process operations saga steps may call"), s.listLocals)
	huma.Register(s.api, get("get-saga", "/v1/sagas/{gid}", "Read a saga with its steps and event timeline"), s.getSaga)
	huma.Register(s.api, get("list-sagas", "/v1/sagas", "List sagas, newest first, with counts per status"), s.listSagas)
	huma.Register(s.api, post("retry-saga", "/v1/sagas/{gid}/retry", "Operator: make the saga's next call now; resume a dead_letter saga (audited)", http.StatusOK), s.sagaAction(engine.SagaRetry))
	huma.Register(s.api, post("compensate-saga", "/v1/sagas/{gid}/compensate", "Operator: undo what the saga did, in reverse order (audited)", http.StatusOK), s.sagaAction(engine.SagaCompensate))
	huma.Register(s.api, post("skip-saga-step", "/v1/sagas/{gid}/skip", "Operator: mark the step the saga waits on done without calling it (audited)", http.StatusOK), s.sagaAction(engine.SagaSkip))
	s.dtmRoutes()
	s.tccRoutes()
	huma.Register(s.api, post("create-webhook-endpoint", "/v1/webhook-endpoints", "Create a webhook endpoint; the answer shows its signing secret", http.StatusCreated), s.createWebhook)
	huma.Register(s.api, get("list-webhook-endpoints", "/v1/webhook-endpoints", "List webhook endpoints, oldest first"), s.listWebhooks)
	huma.Register(s.api, get("get-webhook-endpoint", "/v1/webhook-endpoints/{id}", "Read a webhook endpoint with its signing secret"), s.getWebhook)
	huma.Register(s.api, post("update-webhook-endpoint", "/v1/webhook-endpoints/{id}", "Enable or disable a webhook endpoint, or change its URL or event types", http.StatusOK), s.updateWebhook)
	huma.Register(s.api, huma.Operation{OperationID: "delete-webhook-endpoint", Method: http.MethodDelete, Path: "/v1/webhook-endpoints/{id}",
		Summary: "Delete a webhook endpoint and its deliveries (pending ones are not sent; audited on its timeline)", DefaultStatus: http.StatusOK}, s.deleteWebhook)
	huma.Register(s.api, get("list-webhook-deliveries", "/v1/webhook-endpoints/{id}/deliveries", "An endpoint's deliveries, newest first; status=dead is its dead-letter list"), s.listDeliveries)
	huma.Register(s.api, post("redeliver-webhook", "/v1/webhook-deliveries/{id}/redeliver", "Operator: send a delivery again now, with a fresh retry schedule (audited)", http.StatusOK), s.redeliver)
	s.mux.HandleFunc("/", s.noRoute)
	if s.cfg.Metrics != nil {
		s.mux.Handle("GET /metrics", s.cfg.Metrics)
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// pid tells which process answered: several may share a host, and a port
		// freed by one can be taken by another.
		body := map[string]string{"status": "ok", "pid": strconv.Itoa(os.Getpid())}
		if s.cfg.Role != nil {
			body["role"] = s.cfg.Role()
		}
		json.NewEncoder(w).Encode(body)
	})
}

// submit runs cmd through the engine under an optional Idempotency-Key and returns the
// HTTP status and the result, either fresh or replayed from the stored response.
func submit[T any](ctx context.Context, s *Server, cmd engine.Command, op string, key string, body any, status int) (int, T, bool, error) {
	var zero T
	var ik *engine.Idem
	if key != "" {
		if err := idem.ValidKey(key); err != nil {
			return 0, zero, false, problemOf(err)
		}
		canon, err := json.Marshal(body)
		if err != nil {
			return 0, zero, false, problemOf(err)
		}
		if !s.inFlight.Begin(key) {
			return 0, zero, false, problemOf(ordercore.Errorf(ordercore.EIdemKeyInUse, "a request with Idempotency-Key %q is still executing", key))
		}
		defer s.inFlight.End(key)
		ik = &engine.Idem{Key: key, Hash: idem.Fingerprint(op, canon), Status: status}
	}
	res, err := s.cfg.Engine.Submit(ctx, cmd, ik)
	if err != nil {
		return 0, zero, false, problemOf(err)
	}
	if res.Replayed != nil {
		var v T
		if err := json.Unmarshal(res.Replayed.Body, &v); err != nil {
			return 0, zero, false, problemOf(err)
		}
		return res.Replayed.Status, v, true, nil
	}
	v, ok := res.Value.(T)
	limit.Assert(ok, "%s returned %T", op, res.Value)
	return status, v, false, nil
}

func replayedHeader(replayed bool) string {
	if replayed {
		return "true"
	}
	return ""
}
