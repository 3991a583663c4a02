package idem

import (
	"strings"
	"sync"
	"testing"

	"ordercore"
)

func TestValidKey(t *testing.T) {
	for _, tt := range []struct {
		key string
		ok  bool
	}{
		{"k", true},
		{"order-2031-05-06T07:08:09Z/cart#8812", true},
		{strings.Repeat("x", 255), true},
		{"", false},
		{strings.Repeat("x", 256), false},
		{"has space", false},
		{"tab\there", false},
		{"caf\u00e9", false},
		{"nl\n", false},
	} {
		err := ValidKey(tt.key)
		if (err == nil) != tt.ok {
			t.Errorf("ValidKey(%q) = %v, want ok=%v", tt.key, err, tt.ok)
		}
		if err != nil && ordercore.ErrorCode(err) != ordercore.EInvalidIdemKey {
			t.Errorf("ValidKey(%q) code = %s", tt.key, ordercore.ErrorCode(err))
		}
	}
}

// TestFingerprint: the same operation and body match; another operation or body does
// not, even when the bytes concatenate alike.
func TestFingerprint(t *testing.T) {
	a := Fingerprint("place-order", []byte(`{"q":1}`))
	if a != Fingerprint("place-order", []byte(`{"q":1}`)) {
		t.Error("equal requests have different fingerprints")
	}
	for _, other := range []string{
		Fingerprint("place-order", []byte(`{"q":2}`)),
		Fingerprint("restock-sku a", []byte(`{"q":1}`)),
		Fingerprint("place-orde", []byte(`r{"q":1}`)),
	} {
		if other == a {
			t.Error("different requests share a fingerprint")
		}
	}
}

// TestInFlight: exactly one of many concurrent Begins for a key wins until it ends.
func TestInFlight(t *testing.T) {
	var f InFlight
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := 0; i < 64; i++ {
		wg.Go(func() {
			if f.Begin("k") {
				mu.Lock()
				won++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d concurrent Begins won, want 1", won)
	}
	if !f.Begin("other") {
		t.Error("an unrelated key was refused")
	}
	f.End("k")
	if !f.Begin("k") {
		t.Error("the key was refused after End")
	}
}
