package sqlite

import (
	"testing"

	"ordercore/internal/limit"
)

// TestCheckpointWait: the checkpointer waits for about SQLiteCheckpointFrames new frames
// at the rate the WAL grew, one tick at least and SQLiteCheckpointEveryMax at most.
func TestCheckpointWait(t *testing.T) {
	most := int(limit.SQLiteCheckpointEveryMax / limit.SQLiteCheckpointEvery)
	for _, c := range []struct {
		name         string
		log, lastLog int64
		ticks, want  int
	}{
		{"a heavy writer: every tick", 12_000 + 300, 12_000, 1, 1},
		{"exactly the target per tick", limit.SQLiteCheckpointFrames, 0, 1, 1},
		{"a quarter of the target per tick", 5_000 + limit.SQLiteCheckpointFrames/2, 5_000, 2, 4},
		{"over several ticks", 1_000 + limit.SQLiteCheckpointFrames, 1_000, 3, 3},
		{"a light writer: the longest wait", 1_000 + 10, 1_000, 1, most},
		{"the WAL started over: all its frames are new", 64, 9_000, 1, 4},
		{"nothing new", 500, 500, 5, most},
	} {
		if got := checkpointWait(c.log, c.lastLog, c.ticks); got != c.want {
			t.Errorf("%s: checkpointWait(%d, %d, %d) = %d, want %d", c.name, c.log, c.lastLog, c.ticks, got, c.want)
		}
	}
}
