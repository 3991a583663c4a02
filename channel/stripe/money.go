package stripe

import (
	"fmt"
	"math"
	"strings"

	"ordercore"
)

// stripeExtraDigits lists the currencies whose amounts Stripe counts in a smaller unit than
// ISO 4217 does, with the number of extra digits. ISK has no minor unit in ISO 4217 (and in
// ordercore), but Stripe kept it two-decimal for compatibility: 1 ISK is amount 100, and
// since 2023 the amount must be a multiple of 100 (docs.stripe.com/currencies#special-cases).
// Every other currency ordercore supports has the same exponent at Stripe (JPY, KRW, VND,
// CLP, UGX zero-decimal; BHD, JOD, KWD, OMR, TND three-decimal, where Stripe refuses an
// amount whose last digit is not 0 with a definite error).
var stripeExtraDigits = map[ordercore.Currency]int64{"ISK": 100}

// toStripe returns m as Stripe's amount and lowercase currency code.
func toStripe(m ordercore.Money) (int64, string, error) {
	if !m.Currency.Valid() {
		return 0, "", fmt.Errorf("stripe: unsupported currency %q", m.Currency)
	}
	if m.Amount <= 0 {
		return 0, "", fmt.Errorf("stripe: amount %s is not positive", m)
	}
	f := factor(m.Currency)
	if m.Amount > math.MaxInt64/f {
		return 0, "", fmt.Errorf("stripe: amount %s overflows", m)
	}
	return m.Amount * f, strings.ToLower(string(m.Currency)), nil
}

// fromStripe returns Stripe's amount in currency as ordercore Money.
func fromStripe(amount int64, currency string) (ordercore.Money, error) {
	c := ordercore.Currency(strings.ToUpper(currency))
	if !c.Valid() {
		return ordercore.Money{}, fmt.Errorf("stripe: unsupported currency %q", currency)
	}
	f := factor(c)
	if amount%f != 0 {
		return ordercore.Money{}, fmt.Errorf("stripe: amount %d %s has a fraction ordercore cannot hold", amount, currency)
	}
	return ordercore.Money{Amount: amount / f, Currency: c}, nil
}

func factor(c ordercore.Currency) int64 {
	if f, ok := stripeExtraDigits[c]; ok {
		return f
	}
	return 1
}
