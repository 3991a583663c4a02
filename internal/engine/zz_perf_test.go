package engine_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ordercore/internal/engine"
)

func TestZZPerf(t *testing.T) {
	b := setup(t, engine.Config{})
	mustSKU(t, b.eng, "hot", 1_000_000_000)
	var n atomic.Int64
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for i := 0; i < 256; i++ {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if _, err := b.eng.Submit(context.Background(), engine.PlaceOrder{UserID: "u1", Lines: []engine.LineRequest{{SKU: "hot", Quantity: 1}}}, nil); err != nil {
					t.Error(err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	st := b.eng.Stats()
	t.Logf("orders/s=%.0f batches=%d mean batch=%.1f commit time=%v", float64(n.Load())/3, st.Batches, float64(st.Commands)/float64(st.Batches), st.CommitTime)
}
