package cli

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"ordercore/app"
	"ordercore/internal/lease"
	"ordercore/internal/limit"
	"ordercore/natsbus"
)

func serveCmd() *cobra.Command {
	var cfg app.Config
	var level string
	var channels channelFlags
	var syncFor []string
	var fulfilment string
	var reconHour int
	var userOrderRate string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP API and the background workers",
		Long: `Run the HTTP API (OpenAPI document at /openapi.json, Prometheus metrics at /metrics), the order expiry sweeper, the
payment sync (queries open payment attempts, sends and queries refunds), the daily
statement reconciliation and the idempotency-key pruner, on the SQLite file DATA/ordercore.db (created if missing).
SIGINT or SIGTERM stops it gracefully; SIGKILL loses nothing that was answered 2xx.

Scaled out: with --db postgres://... any number of instances share one database, and
all of them serve the API. The background work (expiry sweep, payment sync, reconciliation,
pruning, webhook deliveries and the event relay) runs on one instance at a time, the
holder of a lease row in the database; when it dies another takes over within
--lease-ttl plus a second, and at once when it stops gracefully. GET /healthz names this instance's role: single (SQLite),
leader or standby.

Daily statement reconciliation: from --recon-hour (UTC) on, the statement of the day
before is fetched from every channel that publishes one, matched both ways with what
ordercore recorded, what ordercore missed is applied (a lost notification), and every
other difference opens a review item. Days of the last week not reconciled yet (the
node was down, the channel was late) are caught up; POST /v1/reconciliations runs a day
on demand.

Webhook deliveries go only to public addresses: an endpoint URL whose host is, or
resolves at delivery time to, a loopback, private, link-local, unspecified or multicast
address is refused (at creation for literal addresses and localhost, webhook_url_not_allowed;
at dial time for names). --webhook-allow-private allows loopback and private receivers.

Unless the GOGC environment variable is set, the Go garbage collector runs at
GOGC=400: the live heap is small, and collecting it less often costs less CPU for
some more memory (GOMEMLIMIT, if set, still bounds it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := logger(cmd.ErrOrStderr(), level)
			if err != nil {
				return err
			}
			cfg.Logger, cfg.Version = l, Version
			if cfg.BatchMax < 1 || cfg.BatchMax > limit.BatchCommandsMax {
				return fmt.Errorf("--batch-max %d: want 1 to %d", cfg.BatchMax, limit.BatchCommandsMax)
			}
			if cfg.BatchDelay < 0 || cfg.BatchDelay > limit.BatchDelayMax {
				return fmt.Errorf("--batch-delay %s: want 0 to %s", cfg.BatchDelay, time.Duration(limit.BatchDelayMax))
			}
			if cfg.BatchDelay == 0 {
				cfg.BatchDelay = -1 // asked for none (0 to app.Config is its default)
			}
			if reconHour < 0 || reconHour > 23 {
				return fmt.Errorf("--recon-hour %d: want an hour of the day, 0 to 23 (UTC)", reconHour)
			}
			cfg.ReconHour = reconHour
			if reconHour == 0 {
				cfg.ReconHour = -1 // midnight (0 to app.Config is its default)
			}
			if cfg.UserOrderRate, cfg.UserOrderBurst, err = parseRate(userOrderRate); err != nil {
				return fmt.Errorf("--user-order-rate %q: %w", userOrderRate, err)
			}
			if cfg.PaymentSyncByChannel, err = parseSyncFor(syncFor); err != nil {
				return err
			}
			if err := checkServeSettings(cfg); err != nil {
				return err
			}
			if cfg.Channels, err = channels.build(); err != nil {
				return err
			}
			if fulfilment != "" {
				if cfg.Fulfilment, err = app.LoadFulfilment(fulfilment); err != nil {
					return err
				}
			}
			setGCPercent(os.Getenv)
			a, err := app.Open(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Addr, "addr", ":8080", "listen address HOST:PORT")
	f.StringVar(&cfg.DataDir, "data", "./data", "data directory (holds ordercore.db)")
	f.StringVar(&cfg.NATS, "nats", "", "NATS URL (nats://host:4222) to relay the event log to its JetStream, or \"embedded\" for a JetStream server inside this process (storage in DATA/nats; one node)")
	f.StringVar(&cfg.NATSStream, "nats-stream", natsbus.StreamDefault, "JetStream stream the event log is relayed to (created if missing)")
	f.StringVar(&cfg.NATSSubjects, "nats-subjects", natsbus.SubjectPrefixDefault, "subject prefix of relayed events: PREFIX.<aggregate>.<type>")
	f.StringVar(&fulfilment, "fulfilment", "", "JSON file of the saga steps every paid order runs (award points, ship, notify); a step failing for good refunds the order")
	f.DurationVar(&cfg.LeaseTTL, "lease-ttl", lease.DefaultTTL, "with --db postgres: how long the background lease holds without renewal (failover time)")
	f.StringVar(&cfg.DB, "db", "", "PostgreSQL URL to run on instead of the SQLite file in --data, e.g. postgres://user@host/db?schema=shop (schema default public)")
	f.IntVar(&cfg.BatchMax, "batch-max", limit.BatchCommandsMax, "most commands committed in one transaction")
	f.DurationVar(&cfg.BatchDelay, "batch-delay", limit.BatchDelayDefault, fmt.Sprintf("how long the committer may go on filling a batch while commands keep arriving (it stops once as many have come as the last batch answered, or after %s without one); 0 takes only what queued during the last commit", limit.BatchGapDefault))
	f.BoolVar(&cfg.ManualPayments, "manual-payments", false, "enable POST /v1/orders/{id}/payments/manual (operator-recorded payments)")
	f.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	f.StringArrayVar(&syncFor, "payment-sync-for", nil, "CHANNEL=STEPS: the payment sync schedule of one channel, e.g. stripe=2m,5m,15m,1h,6h (repeatable)")
	f.StringVar(&cfg.PublicURL, "public-url", "", "URL payment channels reach this server at, for notifications (default http://ADDR)")
	f.DurationSliceVar(&cfg.PaymentSync, "payment-sync", limit.PaymentSyncSchedule, "when the payment sync queries an open attempt, each step after the last")
	f.DurationSliceVar(&cfg.RefundSync, "refund-sync", limit.RefundSyncSchedule, "when a pending refund is sent (first step) and then queried")
	f.DurationVar(&cfg.SyncInterval, "sync-interval", limit.PaymentSyncInterval, "longest wait between payment sync sweeps")
	f.IntVar(&reconHour, "recon-hour", limit.ReconHourDefault, "UTC hour (0-23) from which the day before's channel statements are reconciled")
	f.StringVar(&userOrderRate, "user-order-rate", "", "N/s, N/m or N/h: how many orders one user_id may place, N at once and N per second, minute or hour on average; past it POST /v1/orders is 429 rate_limited with Retry-After (per instance; unlimited when empty)")
	f.BoolVar(&cfg.WebhookAllowPrivate, "webhook-allow-private", false, "let webhook endpoints be loopback or private addresses (127.0.0.0/8, ::1, localhost, 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7), for receivers on the premises; link-local (169.254.169.254), unspecified and multicast addresses stay refused")
	f.DurationSliceVar(&cfg.WebhookSchedule, "webhook-schedule", limit.WebhookSchedule, "when a webhook delivery is attempted: the first step after the event, each other after the previous attempt; dead after the last")
	channels.register(f)
	return c
}

// parseRate reads N/s, N/m or N/h as a rate per second and a burst of N; "" is no limit.
func parseRate(s string) (float64, int, error) {
	if s == "" {
		return 0, 0, nil
	}
	n, unit, ok := strings.Cut(s, "/")
	per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	count, err := strconv.Atoi(n)
	if !ok || per == 0 || err != nil || count < 1 || count > 1_000_000 || n[0] == '+' {
		return 0, 0, errors.New("want N/s, N/m or N/h with N from 1 to 1,000,000, e.g. 30/m")
	}
	return float64(count) / per.Seconds(), count, nil
}

// checkServeSettings refuses settings that would only fail later, payment by payment: a
// notify URL channels cannot post to, a schedule that goes backwards, a lease that could
// not be renewed in time or would leave the background work unowned for hours.
func checkServeSettings(cfg app.Config) error {
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--public-url %q: want an absolute http(s) URL that channels can reach, e.g. https://shop.example", cfg.PublicURL)
		}
	}
	for _, sched := range []struct {
		flag      string
		steps     []time.Duration
		zeroFirst bool
	}{{"--payment-sync", cfg.PaymentSync, false}, {"--refund-sync", cfg.RefundSync, true}} {
		for i, d := range sched.steps {
			if d < 0 || d == 0 && !(sched.zeroFirst && i == 0) {
				return fmt.Errorf("%s: step %d is %s; every step must be positive (a refund's first, its send, may be 0s)", sched.flag, i+1, d)
			}
		}
	}
	if err := checkWebhookSchedule(cfg.WebhookSchedule); err != nil {
		return err
	}
	for ch, steps := range cfg.PaymentSyncByChannel {
		for i, d := range steps {
			if d <= 0 {
				return fmt.Errorf("--payment-sync-for %s: step %d is %s; every step must be positive", ch, i+1, d)
			}
		}
	}
	if cfg.LeaseTTL < time.Second || cfg.LeaseTTL > time.Hour {
		return fmt.Errorf("--lease-ttl %s: want 1s to 1h (it is renewed every third of it)", cfg.LeaseTTL)
	}
	if cfg.SyncInterval <= 0 {
		return fmt.Errorf("--sync-interval %s: must be positive", cfg.SyncInterval)
	}
	return nil
}

// checkWebhookSchedule refuses a webhook schedule that is empty, too long, or retries
// without waiting (only the first attempt may be at once).
func checkWebhookSchedule(steps []time.Duration) error {
	if len(steps) == 0 || len(steps) > limit.WebhookScheduleStepsMax {
		return fmt.Errorf("--webhook-schedule: want 1 to %d steps, got %d", limit.WebhookScheduleStepsMax, len(steps))
	}
	for i, d := range steps {
		if d < 0 || d == 0 && i > 0 {
			return fmt.Errorf("--webhook-schedule: step %d is %s; every retry must wait (only the first attempt may be 0s)", i+1, d)
		}
	}
	return nil
}

// parseSyncFor reads --payment-sync-for CHANNEL=STEPS values.
func parseSyncFor(values []string) (map[string][]time.Duration, error) {
	out := map[string][]time.Duration{}
	for _, v := range values {
		ch, steps, ok := strings.Cut(v, "=")
		if !ok || ch == "" || steps == "" {
			return nil, fmt.Errorf("--payment-sync-for wants CHANNEL=STEPS, e.g. stripe=2m,5m,1h; got %q", v)
		}
		for _, part := range strings.Split(steps, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(part))
			if err != nil {
				return nil, fmt.Errorf("--payment-sync-for %s: %w", ch, err)
			}
			out[ch] = append(out[ch], d)
		}
	}
	return out, nil
}

// setGCPercent runs the garbage collector at limit.GCPercent unless GOGC is set in the
// environment (getenv), which then keeps the say, and returns the percent in force.
func setGCPercent(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(limit.GCPercent)
	return limit.GCPercent
}
