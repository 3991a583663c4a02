// Package idem implements the parts of Idempotency-Key handling (Stripe semantics) that
// need no storage: key validation, the request fingerprint, and the in-flight set that
// answers 409 while the first request with a key is still executing. Stored responses are
// written by the engine in the same transaction as the request's effect.
//
// It imports only the standard library, the root package and internal/limit.
package idem

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"

	"ordercore"
	"ordercore/internal/limit"
)

// ValidKey checks an Idempotency-Key header value: 1..limit.IdemKeyBytesMax printable
// ASCII characters.
func ValidKey(k string) error {
	if k == "" || len(k) > limit.IdemKeyBytesMax {
		return ordercore.Errorf(ordercore.EInvalidIdemKey, "Idempotency-Key must be 1..%d characters", limit.IdemKeyBytesMax)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return ordercore.Errorf(ordercore.EInvalidIdemKey, "Idempotency-Key must be printable ASCII without spaces")
		}
	}
	return nil
}

// Fingerprint hashes what identifies a request: its operation and its decoded body in
// canonical form, so a retry with the same parameters matches even if whitespace differs.
func Fingerprint(operation string, canonicalBody []byte) string {
	h := sha256.New()
	h.Write([]byte(operation))
	h.Write([]byte{0})
	h.Write(canonicalBody)
	return hex.EncodeToString(h.Sum(nil))
}

// InFlight is the set of keys whose first request is executing in this process.
type InFlight struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

// Begin marks key in flight; it returns false if it already was (answer 409).
func (f *InFlight) Begin(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = map[string]struct{}{}
	}
	if _, ok := f.keys[key]; ok {
		return false
	}
	f.keys[key] = struct{}{}
	return true
}

// End clears key.
func (f *InFlight) End(key string) {
	f.mu.Lock()
	delete(f.keys, key)
	f.mu.Unlock()
}
