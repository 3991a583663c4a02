package bench

import (
	"fmt"
	"math/rand/v2"

	"ordercore"
	"ordercore/internal/limit"
)

const (
	// stockPerSKU is the stock of every SKU: the most a SKU may hold, far more than any run
	// places (50,000 orders/s for 10 minutes is 3e7), so no order fails for lack of stock.
	stockPerSKU = limit.StockMax
	hotSKU      = "hot"
	userID      = "u1"
)

// price is every SKU's unit price.
var price = ordercore.Money{Amount: 1999, Currency: "USD"}

// scenario is the set of SKUs orders go to; each order takes 1 unit of one SKU chosen
// uniformly at random.
type scenario struct {
	name string
	skus []string
}

func hotScenario() scenario { return scenario{name: ScenarioHot, skus: []string{hotSKU}} }

func manyScenario(n int) scenario {
	sc := scenario{name: manyName(n), skus: make([]string, n)}
	for i := range sc.skus {
		sc.skus[i] = fmt.Sprintf("sku-%06d", i)
	}
	return sc
}

// manyName names the many-SKU scenario by its SKU count, so a figure never claims more
// SKUs than it had: "10k" for 10,000, "100" for 100.
func manyName(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func scenarios(cfg Config) []scenario {
	var out []scenario
	if cfg.wantsScenario(ScenarioHot) {
		out = append(out, hotScenario())
	}
	if cfg.wantsScenario(ScenarioMany) {
		out = append(out, manyScenario(cfg.SKUs))
	}
	return out
}

func (sc scenario) pick(r *rand.Rand) string {
	if len(sc.skus) == 1 {
		return sc.skus[0]
	}
	return sc.skus[r.IntN(len(sc.skus))]
}
