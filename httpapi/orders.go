package httpapi

import (
	"context"
	"net/http"
	"time"

	"ordercore"
	"ordercore/internal/engine"
	"ordercore/internal/idem"
	"ordercore/internal/limit"
	"ordercore/internal/order"
)

type lineBody struct {
	SKU      string `json:"sku" minLength:"1" maxLength:"64"`
	Quantity int64  `json:"quantity" minimum:"1" maximum:"999"`
}

type placeOrderInput struct {
	IdemKey string `header:"Idempotency-Key" maxLength:"255" doc:"Makes retries safe: a repeat with the same key and body returns the stored response"`
	Body    struct {
		UserID           string     `json:"user_id" minLength:"1" maxLength:"64" pattern:"^[A-Za-z0-9_.:-]+$"`
		Lines            []lineBody `json:"lines" minItems:"1" maxItems:"100" doc:"Prices come from the SKUs, never from the client"`
		Currency         string     `json:"currency,omitempty" pattern:"^[A-Z]{3}$" doc:"If set, every SKU must be priced in it"`
		ExpiresInSeconds int64      `json:"expires_in_seconds,omitempty" minimum:"1" maximum:"86400" doc:"Time to pay before the order is cancelled; default 900"`
	}
}

type orderOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Location string `header:"Location"`
	Body     ordercore.Order
}

func (s *Server) placeOrder(ctx context.Context, in *placeOrderInput) (*orderOutput, error) {
	b := in.Body
	cmd := engine.PlaceOrder{UserID: b.UserID, Currency: ordercore.Currency(b.Currency),
		ExpiresIn: time.Duration(b.ExpiresInSeconds) * time.Second, Lines: make([]engine.LineRequest, len(b.Lines))}
	for i, l := range b.Lines {
		cmd.Lines[i] = engine.LineRequest{SKU: l.SKU, Quantity: l.Quantity}
	}
	if err := cmd.Validate(); err != nil {
		return nil, problemOf(err)
	}
	if in.IdemKey != "" {
		if err := idem.ValidKey(in.IdemKey); err != nil { // before the limit: it costs nothing
			return nil, problemOf(err)
		}
	}
	giveBack := func() {}
	if s.cfg.UserOrders != nil {
		ok, wait, back := s.cfg.UserOrders.Take(b.UserID, s.cfg.Clock.Now())
		if !ok {
			return nil, rateLimited("orders of user "+b.UserID, wait)
		}
		giveBack = back
	}
	status, o, replayed, err := submit[ordercore.Order](ctx, s, cmd, "place-order", in.IdemKey, b, http.StatusCreated)
	if replayed || problemCode(err) == ordercore.EIdemKeyReused || problemCode(err) == ordercore.EIdemKeyInUse {
		giveBack() // a retry under its key placed nothing
	}
	if err != nil {
		return nil, err
	}
	return &orderOutput{Status: status, Replayed: replayedHeader(replayed), Location: "/v1/orders/" + o.ID, Body: o}, nil
}

type orderIDInput struct {
	ID string `path:"id" maxLength:"36"`
}

// TimelineEvent is one event of an order's timeline.
type TimelineEvent struct {
	Seq  int64     `json:"seq"`
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	Data any       `json:"data"`
}

// OrderDetail is an order with its event timeline.
type OrderDetail struct {
	ordercore.Order
	Timeline          []TimelineEvent `json:"timeline"`
	TimelineTruncated bool            `json:"timeline_truncated,omitempty" doc:"The order has more events than the timeline shows (its latest 200): the feed (GET /v1/events) has them all"`
}

// recentTimeline reads the latest limit.TimelineEventsMax events of an aggregate, and
// whether it has older ones: what a timeline shows is where it stands now.
func (s *Server) recentTimeline(ctx context.Context, id string) ([]ordercore.Event, bool, error) {
	evs, err := s.cfg.Reader.RecentAggregateEvents(ctx, id, limit.TimelineEventsMax+1)
	if err != nil || len(evs) <= limit.TimelineEventsMax {
		return evs, false, err
	}
	return evs[1:], true, nil
}

type orderDetailOutput struct {
	Body OrderDetail
}

func (s *Server) getOrder(ctx context.Context, in *orderIDInput) (*orderDetailOutput, error) {
	if !ordercore.ValidID(in.ID) {
		return nil, problemOf(ordercore.Errorf(ordercore.ENOTFOUND, "order %q not found", in.ID))
	}
	o, err := s.cfg.Reader.Order(ctx, in.ID)
	if err != nil {
		return nil, problemOf(err)
	}
	evs, truncated, err := s.recentTimeline(ctx, in.ID)
	if err != nil {
		return nil, problemOf(err)
	}
	d := OrderDetail{Order: o, Timeline: make([]TimelineEvent, len(evs)), TimelineTruncated: truncated}
	for i, e := range evs {
		d.Timeline[i] = TimelineEvent{Seq: e.Seq, Type: e.Type, Time: e.Time, Data: e.Data}
	}
	return &orderDetailOutput{Body: d}, nil
}

type listOrdersInput struct {
	UserID string `query:"user_id" required:"true" minLength:"1" maxLength:"64" pattern:"^[A-Za-z0-9_.:-]+$" doc:"The user_id the orders were placed with"`
	Cursor string `query:"cursor" doc:"next_cursor of the previous page"`
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50"`
}

type listOrdersOutput struct {
	Body struct {
		Orders     []ordercore.Order `json:"orders"`
		NextCursor string            `json:"next_cursor,omitempty" doc:"Pass as cursor for the next page; absent on the last page"`
	}
}

func (s *Server) listOrders(ctx context.Context, in *listOrdersInput) (*listOrdersOutput, error) {
	if in.Cursor != "" && !ordercore.ValidID(in.Cursor) {
		return nil, problemOf(ordercore.Errorf(ordercore.EInvalidCursor, "cursor %q is not one this API returned", in.Cursor))
	}
	n := in.Limit
	if n <= 0 {
		n = limit.PageSizeDefault
	}
	orders, err := s.cfg.Reader.OrdersByUser(ctx, in.UserID, in.Cursor, n+1)
	if err != nil {
		return nil, problemOf(err)
	}
	out := &listOrdersOutput{}
	if len(orders) > n {
		orders = orders[:n]
		out.Body.NextCursor = orders[n-1].ID
	}
	if orders == nil {
		orders = []ordercore.Order{}
	}
	out.Body.Orders = orders
	return out, nil
}

type transitionInput struct {
	ID      string `path:"id" maxLength:"36"`
	IdemKey string `header:"Idempotency-Key" maxLength:"255"`
	// No body, or an empty JSON object: a body is read and checked like any other, so
	// a malformed one, one of another media type or one over the limit is refused
	// before anything changes.
	Body *struct{} `required:"false"`
}

type transitionKind struct {
	op  string
	cmd order.Command
}

var (
	orderCancel   = transitionKind{"cancel-order", order.Cancel}
	orderShip     = transitionKind{"ship-order", order.Ship}
	orderComplete = transitionKind{"complete-order", order.Complete}
)

func (s *Server) transition(k transitionKind) func(context.Context, *transitionInput) (*orderOutput, error) {
	return func(ctx context.Context, in *transitionInput) (*orderOutput, error) {
		if !ordercore.ValidID(in.ID) {
			return nil, problemOf(ordercore.Errorf(ordercore.ENOTFOUND, "order %q not found", in.ID))
		}
		cmd := engine.Transition{OrderID: in.ID, Command: k.cmd}
		status, o, replayed, err := submit[ordercore.Order](ctx, s, cmd, k.op+" "+in.ID, in.IdemKey, struct{}{}, http.StatusOK)
		if k.cmd == order.Cancel && s.cfg.Payments != nil && problemCode(err) == ordercore.EPaymentInProgress {
			// Its attempt is closed at the channel first; a channel that says it was paid
			// pays the order, and the cancel is then refused.
			if cerr := s.cfg.Payments.CloseOpen(ctx, in.ID); cerr != nil {
				return nil, problemOf(cerr)
			}
			status, o, replayed, err = submit[ordercore.Order](ctx, s, cmd, k.op+" "+in.ID, in.IdemKey, struct{}{}, http.StatusOK)
		}
		if err != nil {
			return nil, err
		}
		return &orderOutput{Status: status, Replayed: replayedHeader(replayed), Location: "/v1/orders/" + o.ID, Body: o}, nil
	}
}

type manualPaymentInput struct {
	ID      string `path:"id" maxLength:"36"`
	IdemKey string `header:"Idempotency-Key" maxLength:"255"`
	Body    struct {
		Amount    AmountBody `json:"amount" doc:"Must equal the order's amount"`
		Reference string     `json:"reference" minLength:"1" maxLength:"200" doc:"Bank transfer or receipt reference"`
	}
}

func (s *Server) manualPayment(ctx context.Context, in *manualPaymentInput) (*orderOutput, error) {
	if !ordercore.ValidID(in.ID) {
		return nil, problemOf(ordercore.Errorf(ordercore.ENOTFOUND, "order %q not found", in.ID))
	}
	if !ordercore.ValidText(in.Body.Reference) {
		return nil, problemOf(ordercore.Errorf(ordercore.EINVALID, "reference must be text without control characters"))
	}
	amt := ordercore.Money{Amount: in.Body.Amount.Amount, Currency: ordercore.Currency(in.Body.Amount.Currency)}
	cmd := engine.ApplyPayment{OrderID: in.ID, Payment: ordercore.PaymentApplied{Channel: engine.ManualChannel, Reference: in.Body.Reference, Amount: amt}}
	status, o, replayed, err := submit[ordercore.Order](ctx, s, cmd, "manual-payment "+in.ID, in.IdemKey, in.Body, http.StatusOK)
	if s.cfg.Payments != nil && problemCode(err) == ordercore.EPaymentInProgress {
		// As for a cancel: the open attempt is closed at its channel first; one the
		// shopper paid meanwhile pays the order, and this payment is then refused.
		if cerr := s.cfg.Payments.CloseOpen(ctx, in.ID); cerr != nil {
			return nil, problemOf(cerr)
		}
		status, o, replayed, err = submit[ordercore.Order](ctx, s, cmd, "manual-payment "+in.ID, in.IdemKey, in.Body, http.StatusOK)
	}
	if err != nil {
		return nil, err
	}
	return &orderOutput{Status: status, Replayed: replayedHeader(replayed), Location: "/v1/orders/" + o.ID, Body: o}, nil
}
