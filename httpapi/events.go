package httpapi

import (
	"context"

	"ordercore"
	"ordercore/internal/limit"
)

type listEventsInput struct {
	After int64 `query:"after" minimum:"0" doc:"Return events with a sequence number above this; start at 0"`
	Limit int   `query:"limit" minimum:"1" maximum:"500" default:"100"`
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
	evs, err := s.cfg.Reader.Events(ctx, in.After, n)
	if err != nil {
		return nil, problemOf(err)
	}
	out := &listEventsOutput{}
	out.Body.Events = make([]ordercore.CloudEvent, len(evs))
	out.Body.NextAfter = in.After
	for i, e := range evs {
		out.Body.Events[i] = e.Envelope()
		out.Body.NextAfter = e.Seq
	}
	return out, nil
}
