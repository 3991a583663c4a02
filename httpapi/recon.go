package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"ordercore"
	"ordercore/internal/limit"
	"ordercore/internal/recon"
)

// Reconciler runs and reads daily statement reconciliations (internal/recon).
type Reconciler interface {
	Reconcile(ctx context.Context, channel string, day time.Time) (ordercore.Reconciliation, error)
	Last(ctx context.Context, channel string, day time.Time) (ordercore.Reconciliation, bool, error)
}

type reconOutput struct {
	Status int
	Body   ordercore.Reconciliation
}

type runReconInput struct {
	IdemKey string `header:"Idempotency-Key" doc:"Not taken: running a day again is safe (it repairs nothing twice and opens no second review item); a key is 400 invalid_idempotency_key"`
	Body    struct {
		Channel string `json:"channel" minLength:"1" maxLength:"64" doc:"A configured channel that publishes daily statements"`
		Day     string `json:"day" format:"date" doc:"The UTC day (YYYY-MM-DD) whose statement to reconcile; today's is partial"`
	}
}

// runRecon reconciles a channel's day now. It needs no Idempotency-Key: running a day
// again repairs nothing twice and opens no second review item for the same discrepancy.
func (s *Server) runRecon(ctx context.Context, in *runReconInput) (*reconOutput, error) {
	if in.IdemKey != "" {
		// A client that sends a key expects a retry to replay the first answer; a run
		// is not replayed but made again, so the key is refused rather than ignored.
		return nil, problemOf(ordercore.Errorf(ordercore.EInvalidIdemKey,
			"POST /v1/reconciliations takes no Idempotency-Key: running a day again is safe, and a retry runs it again"))
	}
	day, err := reconDay(in.Body.Day, s.cfg.Clock.Now())
	if err != nil {
		return nil, problemOf(err)
	}
	if s.cfg.Recon == nil {
		return nil, problemOf(ordercore.Errorf(ordercore.EUnknownChannel, "no payment channel is configured"))
	}
	extendWait(ctx, limit.ReconRunMax) // a day of many payments takes a while
	ctx, cancel := context.WithTimeout(ctx, limit.ReconRunMax)
	defer cancel()
	rep, err := s.cfg.Recon.Reconcile(ctx, in.Body.Channel, day)
	switch {
	case errors.Is(err, recon.ErrUnknownChannel):
		return nil, problemOf(ordercore.Errorf(ordercore.EUnknownChannel, "no payment channel %q is configured", in.Body.Channel))
	case errors.Is(err, recon.ErrNoStatements):
		return nil, problemOf(ordercore.Errorf(ordercore.ENoStatements, "channel %q publishes no daily statement to reconcile", in.Body.Channel))
	case errors.Is(err, recon.ErrChannel):
		// The statement's download, or a query of the channel, failed: no report was
		// recorded for the day; what the run applied stands.
		return nil, problemOf(ordercore.Errorf(ordercore.EChannelUnavailable, "reconciliation of %s at %s did not finish: the channel did not answer (the statement's download, or a query after its retries); what it applied stands; try again",
			in.Body.Day, in.Body.Channel))
	case errors.Is(err, context.DeadlineExceeded):
		return nil, problemOf(ordercore.Errorf(ordercore.EUnavailable, "reconciliation of %s at %s did not finish within %s: what it applied stands; run it again",
			in.Body.Day, in.Body.Channel, limit.ReconRunMax))
	case err != nil:
		return nil, problemOf(err)
	}
	return &reconOutput{Status: http.StatusCreated, Body: rep}, nil
}

type getReconInput struct {
	Channel string `path:"channel" maxLength:"64" doc:"A configured payment channel"`
	Day     string `path:"day" maxLength:"10" doc:"The UTC day, YYYY-MM-DD"`
}

func (s *Server) getRecon(ctx context.Context, in *getReconInput) (*reconOutput, error) {
	day, err := time.Parse(time.DateOnly, in.Day)
	if err != nil {
		return nil, problemOf(ordercore.Errorf(ordercore.EINVALID, "day must be a date, YYYY-MM-DD"))
	}
	if s.cfg.Recon == nil || s.cfg.Payments == nil || s.cfg.Payments.Channels[in.Channel] == nil {
		return nil, problemOf(ordercore.Errorf(ordercore.EUnknownChannel, "no payment channel %q is configured", in.Channel))
	}
	rep, found, err := s.cfg.Recon.Last(ctx, in.Channel, day)
	if err != nil {
		return nil, problemOf(err)
	}
	if !found {
		return nil, problemOf(ordercore.Errorf(ordercore.ENOTFOUND, "no reconciliation of %s at %q has been recorded", in.Day, in.Channel))
	}
	return &reconOutput{Status: http.StatusOK, Body: rep}, nil
}

// reconDay parses a day to reconcile: a date that has begun by now (UTC).
func reconDay(s string, now time.Time) (time.Time, error) {
	day, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, ordercore.Errorf(ordercore.EINVALID, "day must be a date, YYYY-MM-DD")
	}
	if day.After(now.UTC()) {
		return time.Time{}, ordercore.Errorf(ordercore.EINVALID, "day %s has not begun (UTC): there is no statement of it", s)
	}
	if day.Before(now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -limit.ReconDaysMax)) {
		return time.Time{}, ordercore.Errorf(ordercore.EINVALID, "day %s is more than %d days before today (UTC): channels keep no statement that old", s, limit.ReconDaysMax)
	}
	return day, nil
}
