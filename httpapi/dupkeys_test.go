package httpapi

import (
	"encoding/json"
	"testing"
)

func TestDuplicateKey(t *testing.T) {
	for _, tc := range []struct {
		body string
		name string
		dup  bool
	}{
		{`{"a":1,"b":2}`, "", false},
		{`{"a":1,"a":2}`, "a", true},
		{`{"user_id":"u1","lines":[{"sku":"a","quantity":1},{"sku":"a","quantity":2}]}`, "", false}, // the same names in different objects
		{`{"lines":[{"sku":"a","sku":"b"}]}`, "sku", true},
		{`{"a":{"a":{"a":1}},"b":[{"a":1},{"b":2}]}`, "", false},
		{`{"a":{"x":1},"a":2}`, "a", true},
		{`{"a":[1,2,{"c":3}],"b":"a","a":0}`, "a", true},
		{`{"a":"b","b":"a"}`, "", false}, // a value equal to a name is no name
		{`[{"a":1},{"a":1}]`, "", false},
		{`{"a\u0062":1,"ab":2}`, "ab", true}, // the same name, escaped
		{`{"a":1,`, "", false},               // malformed: the decoder's to report
		{`not json`, "", false},
		{`{"a":null,"b":true,"c":false,"d":1.5,"a":[]}`, "a", true},
		{`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k0":0}`, "k0", true}, // many names
		{`{"s":"a \" b","t":"]}{,","s":1}`, "s", true}, // brackets and quotes inside strings
	} {
		name, dup := duplicateKey([]byte(tc.body))
		if name != tc.name || dup != tc.dup {
			t.Errorf("duplicateKey(%s) = %q, %v; want %q, %v", tc.body, name, dup, tc.name, tc.dup)
		}
	}
}

// FuzzDuplicateKey: on every JSON text the byte scanner finds what encoding/json's
// tokens find, and a text that encoding/json writes from a map (every name once per
// object) has no duplicate, whatever its shape.
func FuzzDuplicateKey(f *testing.F) {
	f.Add(`{"user_id":"u1","lines":[{"sku":"a","quantity":1}]}`)
	f.Add(`[{"a":{"b":[1,{"c":null}]}}]`)
	f.Add(`{"a":1,"b":{"a":2},"a":3}`)
	f.Add(`{"a\"b":1,"a\"b":2}`)
	f.Fuzz(func(t *testing.T, body string) {
		if !json.Valid([]byte(body)) {
			return
		}
		name, dup := duplicateKey([]byte(body))
		wantName, wantDup := decodeDuplicateKey([]byte(body))
		if dup != wantDup || (dup && name != wantName) {
			t.Fatalf("duplicateKey(%s) = %q, %v; by tokens %q, %v", body, name, dup, wantName, wantDup)
		}
		var v any
		if json.Unmarshal([]byte(body), &v) != nil {
			return
		}
		canon, err := json.Marshal(v)
		if err != nil {
			return
		}
		if name, dup := duplicateKey(canon); dup {
			t.Fatalf("duplicateKey(%s) found %q twice", canon, name)
		}
	})
}

func BenchmarkDuplicateKey(b *testing.B) {
	body := []byte(`{"user_id":"u1","lines":[{"sku":"hot","quantity":1}]}`)
	b.ReportAllocs()
	for b.Loop() {
		duplicateKey(body)
	}
}
