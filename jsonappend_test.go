package ordercore

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// The appenders must write byte for byte what encoding/json writes: stored events are
// compared, replayed and signed as bytes.
func FuzzAppendJSON(f *testing.F) {
	f.Add("u1", "sku-1", "EUR", int64(1250), int64(2), int64(1_700_000_000_123_456_789), int64(1), uint8(1), int64(0))
	f.Add("ü<&>\"\\\n\x00\u2028", "a\xffb", "", int64(-5), int64(0), int64(-62135596800_000_000_0), int64(-1), uint8(0), int64(3600))
	f.Add("", "", "JPY", int64(0), int64(999), int64(0), int64(0), uint8(3), int64(-3600*14))
	for _, s := range []string{"a<b", "a>b", "a&b", `a"b`, `a\b`, "a\x7fb", "a\tb", "a\x1fb", "é"} {
		f.Add(s, s, s, int64(1), int64(1), int64(0), int64(1), uint8(1), int64(0))
	}
	f.Fuzz(func(t *testing.T, user, sku, cur string, amount, qty, nanos, version int64, lines uint8, offset int64) {
		at := time.Unix(0, nanos).In(time.FixedZone("z", int(offset%(3600*24))))
		if at.Year() < 0 || at.Year() > 9999 {
			return
		}
		p := OrderPlaced{UserID: user, Amount: Money{Amount: amount, Currency: Currency(cur)}, ExpiresAt: at, Version: version}
		if lines > 0 {
			p.Lines = []Line{}
		}
		for i := range int(lines % 4) {
			p.Lines = append(p.Lines, Line{SKU: sku, Quantity: qty + int64(i), UnitPrice: Money{amount, Currency(cur)},
				Amount: Money{amount * qty, Currency(cur)}, Reservation: ReservationStatus(user)})
		}
		sameJSON(t, p, p.AppendJSON)
		o := Order{ID: sku, UserID: user, Status: OrderStatus(cur), Amount: p.Amount, Lines: p.Lines, ExpiresAt: at,
			Version: version, CancelReason: sku, CreatedAt: at.Add(-time.Duration(offset)), UpdatedAt: at.Add(time.Duration(qty))}
		if lines%2 == 0 {
			o.CancelReason = "" // omitted when empty
		}
		if o.CreatedAt.Year() >= 0 && o.CreatedAt.Year() <= 9999 && o.UpdatedAt.Year() >= 0 && o.UpdatedAt.Year() <= 9999 {
			sameJSON(t, o, o.AppendJSON)
		}
	})
}

func sameJSON(t *testing.T, v any, appendJSON func([]byte) []byte) {
	t.Helper()
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendJSON([]byte("prefix")); string(got) != "prefix"+string(want) {
		t.Fatalf("%T: AppendJSON wrote\n%s\nencoding/json\n%s", v, got[len("prefix"):], want)
	}
}

// A field added to one of these types must be added to its appender too: the fuzz test
// only sees fields it sets, and an omitempty field left empty encodes as nothing.
func TestAppendJSONKnowsEveryField(t *testing.T) {
	for _, tc := range []struct {
		v      any
		fields int
	}{{Order{}, 10}, {OrderPlaced{}, 5}, {Line{}, 5}, {Money{}, 2}} {
		if n := reflect.TypeOf(tc.v).NumField(); n != tc.fields {
			t.Errorf("%T has %d fields, its appender writes %d: update jsonappend.go and this count", tc.v, n, tc.fields)
		}
	}
}
