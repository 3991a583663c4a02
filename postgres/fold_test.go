package postgres

import (
	"reflect"
	"testing"
	"time"

	"ordercore"
)

// TestCommitsWithApplyKnowsEveryField: every kind of change is classified, as one whose
// statements the server judges (its COMMIT may go with Apply's batch) or one with a guard
// only ordercore judges from a row count (its COMMIT waits for the results). A field added
// to Changeset fails this test until it is put in one list, and commitsWithApply folds
// only the first.
func TestCommitsWithApplyKnowsEveryField(t *testing.T) {
	folds := map[string]bool{
		"NewSKUs": true, "StockChanges": true, "Ledger": true, "NewOrders": true, "Events": true, "Idempotency": true,

		"OrderChanges": false, "NewPayments": false, "PaymentChanges": false, "NewRefunds": false,
		"RefundChanges": false, "MoneyLedger": false, "ChannelEvents": false, "NewReviews": false,
		"ReviewChanges": false, "NewSagas": false, "SagaChanges": false, "NewWebhookEndpoints": false,
		"WebhookEndpointChanges": false, "NewWebhookDeliveries": false, "WebhookDeliveryChanges": false,
		"DeletedWebhookEndpoints": false,
		"NewHolds":                false, "HoldChanges": false, "NewBarriers": false, "IdemPruneBefore": false,
		"IdemPruneMax": true, // on its own it writes nothing (IdemPruneBefore is zero)
	}
	typ := reflect.TypeFor[ordercore.Changeset]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		want, ok := folds[f.Name]
		if !ok {
			t.Errorf("Changeset.%s is not classified: can its statements go in one round trip with the COMMIT?", f.Name)
			continue
		}
		var c ordercore.Changeset
		v := reflect.ValueOf(&c).Elem().Field(i)
		switch v.Kind() {
		case reflect.Slice:
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		case reflect.Int:
			v.SetInt(10)
		default:
			v.Set(reflect.ValueOf(time.Unix(1, 0)))
		}
		if got := commitsWithApply(&c); got != want {
			t.Errorf("commitsWithApply with only %s = %v, want %v", f.Name, got, want)
		}
	}
	placed := ordercore.Changeset{NewOrders: make([]ordercore.Order, 1), Ledger: make([]ordercore.StockEntry, 1),
		StockChanges: make([]ordercore.StockChange, 1), Events: make([]ordercore.Event, 1)}
	if !commitsWithApply(&placed) {
		t.Error("a batch of placed orders does not commit with Apply")
	}
	placed.OrderChanges = make([]ordercore.OrderChange, 1)
	if commitsWithApply(&placed) {
		t.Error("a batch with an order change commits with Apply")
	}
}
