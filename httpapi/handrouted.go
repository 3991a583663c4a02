package httpapi

import (
	"net/http"

	"github.com/danielgtaylor/huma/v2"
)

// documentHandRouted lists in the OpenAPI document the routes served outside huma, whose
// bodies follow another protocol (a channel's signed notification, DTM's HTTP API and
// participant conventions) or none of ours (health, metrics), so that the document names
// every route the server answers. Their handlers are the mux's; these entries only
// describe them.
func (s *Server) documentHandRouted() {
	str := &huma.Schema{Type: huma.TypeString}
	query := func(name, doc string) *huma.Param {
		return &huma.Param{Name: name, In: "query", Description: doc, Schema: str}
	}
	branch := []*huma.Param{query("gid", "The global transaction's id"), query("trans_type", "tcc"),
		query("branch_id", "The branch's id within the transaction"), query("op", "try, confirm or cancel, as the path says")}
	ok := func(desc string) map[string]*huma.Response {
		return map[string]*huma.Response{"200": {Description: desc}}
	}
	dtm := ok("DTM's answer: {\"dtm_result\":\"SUCCESS\",...}; a refusal is 409 {\"dtm_result\":\"FAILURE\",\"code\":...}; see docs/dtm-compat.md")
	ops := []*huma.Operation{
		{OperationID: "healthz", Method: http.MethodGet, Path: "/healthz", Summary: "Liveness: the serving process and its role",
			Responses: ok(`{"status":"ok","pid":"...","role":"single|leader|standby"}`)},
		{OperationID: "channel-notify", Method: http.MethodPost, Path: "/v1/channels/{channel}/notify",
			Summary:     "Where a payment channel sends its notifications",
			Description: "The body is the channel's own (signed) format, verified from the raw bytes before anything is read; acknowledged in the channel's own way once applied and durable. Bodies are limited to 64 KiB.",
			Parameters:  []*huma.Param{{Name: "channel", In: "path", Required: true, Description: "A configured channel (GET /v1/channels)", Schema: str}},
			Responses:   ok("The channel's acknowledgement; 401 invalid_signature or stale_notification, 403 merchant_mismatch, 400 malformed_notification, 404 unknown_channel otherwise")},
		{OperationID: "tcc-stock-try", Method: http.MethodPost, Path: TCCStockPrefix + "/try", Summary: "TCC participant: reserve stock (try)",
			Description: `Body {"lines":[{"sku":...,"quantity":...}]}; DTM's participant conventions, behind the barrier.`, Parameters: branch, Responses: dtm},
		{OperationID: "tcc-stock-confirm", Method: http.MethodPost, Path: TCCStockPrefix + "/confirm", Summary: "TCC participant: sell the reserved stock (confirm)",
			Parameters: branch, Responses: dtm},
		{OperationID: "tcc-stock-cancel", Method: http.MethodPost, Path: TCCStockPrefix + "/cancel", Summary: "TCC participant: release the reserved stock (cancel)",
			Parameters: branch, Responses: dtm},
		{OperationID: "dtm-new-gid", Method: http.MethodGet, Path: DTMPrefix + "/newGid", Summary: "DTM: a new global transaction id", Responses: dtm},
		{OperationID: "dtm-prepare", Method: http.MethodPost, Path: DTMPrefix + "/prepare", Summary: "DTM: begin a TCC global transaction", Responses: dtm},
		{OperationID: "dtm-submit", Method: http.MethodPost, Path: DTMPrefix + "/submit", Summary: "DTM: submit a saga, or confirm a prepared TCC", Responses: dtm},
		{OperationID: "dtm-abort", Method: http.MethodPost, Path: DTMPrefix + "/abort", Summary: "DTM: cancel a prepared TCC", Responses: dtm},
		{OperationID: "dtm-register-branch", Method: http.MethodPost, Path: DTMPrefix + "/registerBranch", Summary: "DTM: register a TCC branch", Responses: dtm},
		{OperationID: "dtm-register-tcc-branch", Method: http.MethodPost, Path: DTMPrefix + "/registerTccBranch", Summary: "DTM: register a TCC branch (older clients)", Responses: dtm},
		{OperationID: "dtm-query", Method: http.MethodGet, Path: DTMPrefix + "/query", Summary: "DTM: a global transaction and its branches",
			Parameters: []*huma.Param{query("gid", "The global transaction's id")}, Responses: dtm},
	}
	if s.cfg.Metrics != nil {
		ops = append(ops, &huma.Operation{OperationID: "metrics", Method: http.MethodGet, Path: "/metrics",
			Summary: "Prometheus metrics (text exposition format)", Responses: ok("The metrics")})
	}
	for _, op := range ops {
		s.api.OpenAPI().AddOperation(op)
	}
}
