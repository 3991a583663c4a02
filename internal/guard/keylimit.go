package guard

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// KeyLimiter limits how often each key (a shopper's user id) may do something: a token
// bucket per key (golang.org/x/time/rate) holding Burst tokens, refilled at Rate per
// second. It is what keeps one script from taking a promotion's stock in a burst of
// orders while everyone else waits.
//
// At most Max keys are kept. When a new key finds it full, the buckets that have refilled
// completely are dropped (a fresh bucket is the same); if that frees less than a quarter,
// every bucket is dropped, so a flood of distinct keys costs amortised constant time and
// bounded memory, at the price of giving the keys seen so far a fresh burst.
//
// Limits are per process: n instances behind a load balancer let a key through up to n
// times as often.
type KeyLimiter struct {
	Rate  rate.Limit
	Burst int
	Max   int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// Allow takes a token of key's bucket at now. When there is none it takes nothing and
// returns how long until one is there.
func (l *KeyLimiter) Allow(key string, now time.Time) (bool, time.Duration) {
	b := l.bucket(key, now)
	r := b.ReserveN(now, 1)
	if !r.OK() { // Burst < 1: nothing is ever allowed
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (l *KeyLimiter) bucket(key string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets[key]; ok {
		return b
	}
	if l.buckets == nil {
		l.buckets = map[string]*rate.Limiter{}
	}
	if l.Max > 0 && len(l.buckets) >= l.Max {
		for k, b := range l.buckets {
			if b.TokensAt(now) >= float64(l.Burst) {
				delete(l.buckets, k)
			}
		}
		if len(l.buckets) > l.Max*3/4 {
			clear(l.buckets)
		}
	}
	b := rate.NewLimiter(l.Rate, l.Burst)
	l.buckets[key] = b
	return b
}

// Len is the number of keys held.
func (l *KeyLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
