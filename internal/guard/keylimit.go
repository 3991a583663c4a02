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
	buckets map[string]*keyBucket
}

// Allow takes a token of key's bucket at now. When there is none it takes nothing and
// returns how long until one is there.
func (l *KeyLimiter) Allow(key string, now time.Time) (bool, time.Duration) {
	ok, wait, _ := l.Take(key, now)
	return ok, wait
}

// Take is Allow that can give the token back: giveBack (when ok) returns it to the
// bucket, for a request that turned out to cost nothing (a replayed response). The
// token is kept as a credit the key's next request spends first: x/time/rate cannot
// return a token whose moment has passed.
func (l *KeyLimiter) Take(key string, now time.Time) (ok bool, wait time.Duration, giveBack func()) {
	b := l.bucket(key, now)
	back := func() {
		l.mu.Lock()
		b.credit = min(b.credit+1, l.Burst)
		l.mu.Unlock()
	}
	l.mu.Lock()
	if b.credit > 0 {
		b.credit--
		l.mu.Unlock()
		return true, 0, back
	}
	l.mu.Unlock()
	r := b.lim.ReserveN(now, 1)
	if !r.OK() { // Burst < 1: nothing is ever allowed
		return false, time.Second, nil
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d, nil
	}
	return true, 0, back
}

// keyBucket is one key's token bucket and the tokens given back to it.
type keyBucket struct {
	lim    *rate.Limiter
	credit int
}

func (l *KeyLimiter) bucket(key string, now time.Time) *keyBucket {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets[key]; ok {
		return b
	}
	if l.buckets == nil {
		l.buckets = map[string]*keyBucket{}
	}
	if l.Max > 0 && len(l.buckets) >= l.Max {
		for k, b := range l.buckets {
			if b.lim.TokensAt(now) >= float64(l.Burst) {
				delete(l.buckets, k)
			}
		}
		if len(l.buckets) > l.Max*3/4 {
			clear(l.buckets)
		}
	}
	b := &keyBucket{lim: rate.NewLimiter(l.Rate, l.Burst)}
	l.buckets[key] = b
	return b
}

// Len is the number of keys held.
func (l *KeyLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
