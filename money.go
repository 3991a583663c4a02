package ordercore

import (
	"fmt"
	"math"
	"strings"
)

// Currency is an ISO-4217 alphabetic code such as "USD".
type Currency string

// currencyExponents maps each supported ISO-4217 currency to its number of minor-unit
// digits. Amounts are always stored in minor units; the exponent only matters when a
// decimal is parsed or printed. JPY and KRW have none, BHD/KWD/JOD/OMR/TND have three.
var currencyExponents = map[Currency]int{
	"AED": 2, "AUD": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2,
	"CZK": 2, "DKK": 2, "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2,
	"INR": 2, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "MXN": 2, "MYR": 2,
	"NOK": 2, "NZD": 2, "OMR": 3, "PHP": 2, "PLN": 2, "SAR": 2, "SEK": 2, "SGD": 2,
	"THB": 2, "TND": 3, "TRY": 2, "TWD": 2, "UGX": 0, "USD": 2, "VND": 0, "ZAR": 2,
}

// Exponent returns the number of minor-unit digits of c and whether c is supported.
func (c Currency) Exponent() (int, bool) {
	e, ok := currencyExponents[c]
	return e, ok
}

// Valid reports whether c is a supported ISO-4217 code.
func (c Currency) Valid() bool {
	_, ok := currencyExponents[c]
	return ok
}

// Money is an amount in minor units (cents for USD, yen for JPY) of one currency.
// Floats never represent money anywhere in ordercore.
type Money struct {
	Amount   int64    `json:"amount"`
	Currency Currency `json:"currency"`
}

// Add returns m+o. It fails on a currency mismatch or an int64 overflow.
func (m Money) Add(o Money) (Money, error) {
	if m.Currency != o.Currency {
		return Money{}, Errorf(ECurrencyMismatch, "cannot add %s to %s", o.Currency, m.Currency)
	}
	if (o.Amount > 0 && m.Amount > math.MaxInt64-o.Amount) || (o.Amount < 0 && m.Amount < math.MinInt64-o.Amount) {
		return Money{}, Errorf(EINVALID, "amount overflows")
	}
	return Money{Amount: m.Amount + o.Amount, Currency: m.Currency}, nil
}

// Mul returns m*n. It fails on an int64 overflow.
func (m Money) Mul(n int64) (Money, error) {
	if n != 0 && m.Amount != 0 {
		p := m.Amount * n
		if p/n != m.Amount || (m.Amount == -1 && n == math.MinInt64) || (n == -1 && m.Amount == math.MinInt64) {
			return Money{}, Errorf(EINVALID, "amount overflows")
		}
		return Money{Amount: p, Currency: m.Currency}, nil
	}
	return Money{Currency: m.Currency}, nil
}

// String formats m as a decimal with its currency, e.g. "12.34 USD" or "1000 JPY".
func (m Money) String() string {
	exp, ok := m.Currency.Exponent()
	if !ok {
		return fmt.Sprintf("%d %s(minor)", m.Amount, m.Currency)
	}
	return FormatDecimal(m.Amount, exp) + " " + string(m.Currency)
}

// FormatDecimal prints amount minor units with exp fraction digits, without floats.
func FormatDecimal(amount int64, exp int) string {
	neg := amount < 0
	u := uint64(amount)
	if neg {
		u = -u
	}
	s := fmt.Sprintf("%0*d", exp+1, u)
	if exp > 0 {
		s = s[:len(s)-exp] + "." + s[len(s)-exp:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// ParseMoney parses a decimal string such as "12.34" in currency c into minor units.
// It accepts an optional leading '-', digits, and at most Exponent() fraction digits;
// anything else (exponents, spaces, extra precision, overflow) is rejected.
func ParseMoney(s string, c Currency) (Money, error) {
	exp, ok := c.Exponent()
	if !ok {
		return Money{}, Errorf(EInvalidCurrency, "unsupported currency %q", c)
	}
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && (frac == "" || len(frac) > exp)) {
		return Money{}, Errorf(EINVALID, "malformed amount %q for %s", s, c)
	}
	frac += strings.Repeat("0", exp-len(frac))
	var u uint64
	for _, r := range whole + frac {
		if r < '0' || r > '9' {
			return Money{}, Errorf(EINVALID, "malformed amount %q", s)
		}
		if u > (math.MaxInt64-uint64(r-'0'))/10 {
			return Money{}, Errorf(EINVALID, "amount %q overflows", s)
		}
		u = u*10 + uint64(r-'0')
	}
	a := int64(u)
	if neg {
		a = -a
	}
	return Money{Amount: a, Currency: c}, nil
}
