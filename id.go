package ordercore

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"time"
)

// idClock makes the IDs of one process strictly increasing: RFC 9562 section 6.2, method 1,
// a 12-bit counter in rand_a that restarts each millisecond. IDs made in the same
// millisecond (hundreds per batch) then sort in the order they were made, so "newest
// first" by id is exact; a full counter borrows the next millisecond. The timestamp stays
// the caller's: a clock that steps back makes IDs that sort before earlier ones, which
// only costs order, never uniqueness (62 random bits).
var idClock struct {
	sync.Mutex
	src uint64 // the caller's millisecond of the last ID
	ms  uint64 // the millisecond the last ID carries (src, or later after a spill)
	seq uint64
}

const idSeqMax = 1<<12 - 1

// NewID returns an RFC 9562 UUIDv7 string: a millisecond timestamp, a counter and 62
// random bits. IDs sort by creation time and append to B-tree indexes instead of
// scattering. Written here rather than imported because the root package uses only the
// standard library; the layout below is the whole of the format.
func NewID(now time.Time) string {
	var b [16]byte
	ms, seq := nextIDClock(uint64(now.UnixMilli()))
	binary.BigEndian.PutUint64(b[0:8], ms<<16|seq)
	if _, err := rand.Read(b[8:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // crypto/rand never fails on Linux
	}
	b[6] = 0x70 | (b[6] & 0x0f) // version 7
	b[8] = 0x80 | (b[8] & 0x3f) // variant 10
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

func nextIDClock(ms uint64) (uint64, uint64) {
	idClock.Lock()
	defer idClock.Unlock()
	switch {
	case ms > idClock.ms || ms < idClock.src: // a new millisecond, or the clock stepped back
		idClock.src, idClock.ms, idClock.seq = ms, ms, 0
	case idClock.seq < idSeqMax:
		idClock.seq++
	default:
		idClock.ms, idClock.seq = idClock.ms+1, 0
	}
	return idClock.ms, idClock.seq
}

// ValidID reports whether s looks like a UUID in canonical text form.
func ValidID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// Clock tells the time. Production uses SystemClock; tests run inside testing/synctest,
// whose bubble fakes the standard library's clock, or inject their own.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock, truncated to microseconds so that a time survives a
// round trip through storage unchanged.
type SystemClock struct{}

// Now returns the current time in UTC.
func (SystemClock) Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
