package httpapi

import (
	"context"
	"strconv"

	"ordercore"
	"ordercore/internal/limit"
)

type listEventsInput struct {
	// A string, read here: a cursor that is not a sequence number is 400 invalid_cursor,
	// as every other cursor of the API, not a schema violation.
	After string `query:"after" doc:"Return events with a sequence number above this (an integer, 0 or more; start at 0). Anything else is 400 invalid_cursor"`
	Limit int    `query:"limit" minimum:"1" maximum:"500" default:"100"`
}

type listEventsOutput struct {
	Body struct {
		Events    []ordercore.CloudEvent `json:"events" doc:"CloudEvents 1.0 JSON envelopes, in commit order"`
		NextAfter int64                  `json:"next_after" doc:"Pass as after for the next page"`
	}
}

// listEvents serves the event feed with cursor pagination. A consumer polls with the
// next_after it was given; it never misses an event because sequence numbers are assigned
// in commit order by the single writer.
func (s *Server) listEvents(ctx context.Context, in *listEventsInput) (*listEventsOutput, error) {
	n := in.Limit
	if n <= 0 {
		n = limit.FeedPageDefault
	}
	var after int64
	if in.After != "" {
		v, err := strconv.ParseInt(in.After, 10, 64)
		if err != nil || v < 0 || in.After[0] == '+' {
			return nil, problemOf(ordercore.Errorf(ordercore.EInvalidCursor, "after must be a sequence number, 0 or more, as next_after gives it"))
		}
		after = v
	}
	evs, err := s.cfg.Reader.Events(ctx, after, n)
	if err != nil {
		return nil, problemOf(err)
	}
	out := &listEventsOutput{}
	out.Body.Events = make([]ordercore.CloudEvent, len(evs))
	out.Body.NextAfter = after
	for i, e := range evs {
		out.Body.Events[i] = e.Envelope()
		out.Body.NextAfter = e.Seq
	}
	return out, nil
}
