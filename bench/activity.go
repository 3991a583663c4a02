package bench

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// activityEvery is how often a PostgreSQL path samples pg_stat_activity in its window:
// about 100 samples in the default 5 s, each a read of the server's shared memory.
const activityEvery = 50 * time.Millisecond

// Activity is what a path's PostgreSQL sessions were doing in its window: the mean number
// of them in each state over samples of pg_stat_activity. A session that is not in a
// transaction (idle, waiting for its committer's next batch) counts in none.
type Activity struct {
	Samples  int
	Running  float64 // executing a statement and not waiting: on a CPU or ready for one
	RowLock  float64 // waiting for a row another transaction has locked (the SKU row)
	FeedLock float64 // waiting for the event feed's advisory lock (postgres/events.go)
	WAL      float64 // writing or flushing the WAL (the commit's fsync), or waiting for it
	Client   float64 // idle in transaction: waiting for ordercore's next statement
	Other    float64 // any other wait
	Err      string  // why sampling stopped early, if it did
}

// InTx is the mean number of the path's sessions inside a transaction.
func (a Activity) InTx() float64 {
	return a.Running + a.RowLock + a.FeedLock + a.WAL + a.Client + a.Other
}

// sampler reads pg_stat_activity every activityEvery until finish.
type sampler struct {
	stop, done chan struct{}
	sum        Activity
}

// startActivity samples the sessions whose application_name is app. finish lets a
// sample in flight complete rather than cancel it (which the server would log as an
// error).
func startActivity(ctx context.Context, admin *pgxpool.Pool, app string) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(activityEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.stop:
				return
			case <-t.C:
			}
			if err := s.sample(ctx, admin, app); err != nil {
				if ctx.Err() == nil {
					s.sum.Err = err.Error()
				}
				return
			}
		}
	}()
	return s
}

func (s *sampler) sample(ctx context.Context, admin *pgxpool.Pool, app string) error {
	rows, err := admin.Query(ctx, `SELECT coalesce(state, ''), coalesce(wait_event_type, ''), coalesce(wait_event, ''), count(*)
		FROM pg_stat_activity WHERE application_name = $1 GROUP BY 1, 2, 3`, app)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var state, typ, event string
		var n int64
		if err := rows.Scan(&state, &typ, &event, &n); err != nil {
			return err
		}
		if f := s.sum.field(state, typ, event); f != nil {
			*f += float64(n)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	s.sum.Samples++
	return nil
}

// field is the counter a session in this state adds to; nil outside a transaction.
func (a *Activity) field(state, waitType, waitEvent string) *float64 {
	switch {
	case state == "idle in transaction" || state == "idle in transaction (aborted)":
		return &a.Client
	case state != "active":
		return nil
	case waitType == "":
		return &a.Running
	case waitType == "Lock" && (waitEvent == "transactionid" || waitEvent == "tuple"):
		return &a.RowLock
	case waitType == "Lock" && waitEvent == "advisory":
		return &a.FeedLock // the only advisory lock a place-order batch takes
	case (waitType == "IO" || waitType == "LWLock") && strings.HasPrefix(waitEvent, "WAL"):
		return &a.WAL
	}
	return &a.Other
}

// finish stops sampling and returns the means.
func (s *sampler) finish() *Activity {
	close(s.stop)
	<-s.done
	a := s.sum
	if a.Samples > 0 {
		n := float64(a.Samples)
		a.Running, a.RowLock, a.FeedLock, a.WAL, a.Client, a.Other =
			a.Running/n, a.RowLock/n, a.FeedLock/n, a.WAL/n, a.Client/n, a.Other/n
	}
	return &a
}

// CPU is how busy the machine was in a window, each figure a share of all its cores'
// time (1 = every core busy for the whole window), read from /proc. Postgres adds up the
// processes named postgres on this machine: the server's, including any sessions of
// other programs.
type CPU struct {
	Machine, Self, Postgres float64
	// PostgresSeen is false when no postgres process is visible (a server elsewhere).
	PostgresSeen bool
}

// Others is the share of the machine's CPU used by neither this process nor PostgreSQL:
// load from outside the benchmark, which depresses its figures. Zero when PostgreSQL's
// processes are not visible.
func (c CPU) Others() float64 {
	if !c.PostgresSeen {
		return 0
	}
	return max(0, c.Machine-c.Self-c.Postgres)
}

// cpuSample is a reading of the clock-tick counters of /proc (all in USER_HZ). pg holds
// each postgres process's own counter: processes come and go (sessions of other
// programs), so only per-process differences add up.
type cpuSample struct {
	ok                bool
	total, idle, self uint64
	pg                map[string]uint64 // by pid
}

func readCPU() cpuSample {
	var s cpuSample
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return s
	}
	// user nice system idle iowait irq softirq steal; guest time is already in user.
	for i := 1; i <= 8; i++ {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return s
		}
		s.total += v
		if i == 4 || i == 5 {
			s.idle += v
		}
	}
	s.self, s.ok = procTicks("self")
	s.pg = postgresTicks()
	return s
}

// procTicks is the user and system CPU time of process pid ("self" or a number).
func procTicks(pid string) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name in parentheses may hold spaces: fields start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	return utime + stime, err1 == nil && err2 == nil
}

// postgresTicks reads the CPU time of every process named postgres, by pid.
func postgresTicks() map[string]uint64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	out := map[string]uint64{}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		if t, ok := procTicks(e.Name()); ok {
			out[e.Name()] = t
		}
	}
	return out
}

// until is the CPU use between a and b; nil when /proc could not be read.
func (a cpuSample) until(b cpuSample) *CPU {
	if !a.ok || !b.ok || b.total <= a.total {
		return nil
	}
	d := float64(b.total - a.total)
	c := &CPU{Machine: float64(b.total-a.total-(b.idle-a.idle)) / d, Self: float64(b.self-a.self) / d}
	if len(b.pg) > 0 {
		c.Postgres, c.PostgresSeen = float64(a.pgTicksUntil(b))/d, true
	}
	return c
}

// pgTicksUntil is the CPU ticks the postgres processes used between a and b. A process
// that started in the window counts from zero; one that ended in it is missed (its last
// figures are gone with it).
func (a cpuSample) pgTicksUntil(b cpuSample) uint64 {
	var pg uint64
	for pid, t := range b.pg {
		if t >= a.pg[pid] {
			pg += t - a.pg[pid]
		}
	}
	return pg
}
