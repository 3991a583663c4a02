package ordercore_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"ordercore"
)

func TestNewIDIsUUIDv7(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 4, 18, 7, 123_456_789, time.UTC)
	for range 1000 { // the random bits differ each time; the layout must not
		id := ordercore.NewID(now)
		if !ordercore.ValidID(id) {
			t.Fatalf("ValidID(NewID()) = false for %q", id)
		}
		// RFC 9562: the version is the high nibble of octet 6, the first digit of the
		// third group; the variant is the top two bits of octet 8, so the first digit of
		// the fourth group is 8, 9, a or b.
		if got := id[14]; got != '7' {
			t.Fatalf("NewID() = %q: version digit %q, want '7'", id, got)
		}
		if got := id[19]; !strings.ContainsRune("89ab", rune(got)) {
			t.Fatalf("NewID() = %q: variant digit %q, want one of 8, 9, a, b", id, got)
		}
		// The first 48 bits are the Unix time in milliseconds; that is what makes the IDs
		// sort by creation time.
		ms, err := strconv.ParseInt(id[0:8]+id[9:13], 16, 64)
		if err != nil {
			t.Fatalf("NewID() = %q: timestamp: %v", id, err)
		}
		if want := now.UnixMilli(); ms != want {
			t.Fatalf("NewID() = %q carries timestamp %d ms, want %d", id, ms, want)
		}
	}
}

func TestNewIDSortsByMillisecond(t *testing.T) {
	t.Parallel()
	// Increasing timestamps chosen where text order could break: 9 -> a (digits and
	// letters sort apart in ASCII), a carry through every digit, then coarser steps.
	const start = 0x018f_ffff_fff9
	times := []int64{
		start, start + 1, start + 2, start + 6, start + 7, // ...fff9, fffa, fffb, ffff, 0000
		start + 1000, start + 3_600_000, start + 86_400_000, start + 365*86_400_000,
	}
	prev := ""
	for i, ms := range times {
		at := time.UnixMilli(ms)
		// Several IDs per millisecond: whatever their random bits, each must sort after
		// every ID of an earlier millisecond.
		var sameMs []string
		for range 20 {
			sameMs = append(sameMs, ordercore.NewID(at))
		}
		for _, id := range sameMs {
			if prev != "" && id <= prev {
				t.Fatalf("step %d: NewID(%v) = %q sorts at or before %q from an earlier millisecond", i, at, id, prev)
			}
		}
		prev = slices.Max(sameMs)
	}
}

func TestNewIDDistinct(t *testing.T) {
	t.Parallel()
	// All in one millisecond, the worst case: only the 74 random bits tell them apart.
	const n = 10_000
	now := time.Now()
	seen := make(map[string]bool, n)
	for range n {
		id := ordercore.NewID(now)
		if seen[id] {
			t.Fatalf("NewID returned %q twice within %d calls", id, n)
		}
		seen[id] = true
	}
}

func TestValidID(t *testing.T) {
	t.Parallel()
	const good = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"
	tests := []struct {
		s    string
		want bool
	}{
		{good, true},
		{"00000000-0000-0000-0000-000000000000", true},
		{"ffffffff-ffff-ffff-ffff-ffffffffffff", true},
		{strings.ToUpper(good), false},
		{"0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6B", false}, // one uppercase digit
		{"", false},
		{good[:35], false},
		{good + "0", false},
		{"{" + good + "}", false},
		{"urn:uuid:" + good, false},
		{strings.ReplaceAll(good, "-", ""), false},
		{"0190a3b45-c6d-7e8f-9a0b-1c2d3e4f5a6b", false}, // first dash one late
		{"0190a3b-45c6d-7e8f-9a0b-1c2d3e4f5a6b", false}, // first dash one early
		{"0190a3b4-5c6d7-e8f-9a0b-1c2d3e4f5a6b", false},
		{"0190a3b4-5c6d-7e8f9-a0b-1c2d3e4f5a6b", false},
		{"0190a3b4-5c6d-7e8f-9a0b1-c2d3e4f5a6b", false},
		{"0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a-b", false}, // dash in the last group
		{"0190a3b4_5c6d_7e8f_9a0b_1c2d3e4f5a6b", false},
		{"0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6g", false}, // not hex
		{"0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6 ", false},
		{"0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5aé", false}, // 36 bytes, not ASCII
	}
	for _, tt := range tests {
		if got := ordercore.ValidID(tt.s); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

// TestNewIDMonotonicWithinMillisecond: IDs made at the same instant, more than the
// counter holds, sort in the order they were made.
func TestNewIDMonotonicWithinMillisecond(t *testing.T) {
	at := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	prev := ordercore.NewID(at)
	for i := 0; i < 10_000; i++ {
		id := ordercore.NewID(at)
		if id <= prev {
			t.Fatalf("id %d: %s does not sort after %s", i, id, prev)
		}
		if !ordercore.ValidID(id) || id[14] != '7' {
			t.Fatalf("id %d: %s is not a valid UUIDv7", i, id)
		}
		prev = id
	}
}
