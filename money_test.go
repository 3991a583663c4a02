package ordercore_test

import (
	"math"
	"math/big"
	"testing"

	"github.com/google/go-cmp/cmp"

	"ordercore"
)

func usd(a int64) ordercore.Money { return ordercore.Money{Amount: a, Currency: "USD"} }

func TestMoneyAdd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		m, o     ordercore.Money
		want     ordercore.Money
		wantCode string // "" means no error
	}{
		{name: "sum", m: usd(1234), o: usd(66), want: usd(1300)},
		{name: "negative operand", m: usd(100), o: usd(-250), want: usd(-150)},
		{name: "zero", m: usd(0), o: usd(0), want: usd(0)},
		{name: "up to max", m: usd(math.MaxInt64 - 1), o: usd(1), want: usd(math.MaxInt64)},
		{name: "down to min", m: usd(math.MinInt64 + 1), o: usd(-1), want: usd(math.MinInt64)},
		{name: "max plus min", m: usd(math.MaxInt64), o: usd(math.MinInt64), want: usd(-1)},
		{name: "overflow positive", m: usd(math.MaxInt64), o: usd(1), wantCode: ordercore.EINVALID},
		{name: "overflow positive large", m: usd(math.MaxInt64 / 2), o: usd(math.MaxInt64/2 + 2), wantCode: ordercore.EINVALID},
		{name: "overflow negative", m: usd(math.MinInt64), o: usd(-1), wantCode: ordercore.EINVALID},
		{name: "overflow negative both min", m: usd(math.MinInt64), o: usd(math.MinInt64), wantCode: ordercore.EINVALID},
		{
			name:     "currency mismatch",
			m:        usd(100),
			o:        ordercore.Money{Amount: 100, Currency: "EUR"},
			wantCode: ordercore.ECurrencyMismatch,
		},
		{
			// Zero is no exception: a zero EUR amount still is not a USD amount.
			name:     "currency mismatch on zero",
			m:        usd(0),
			o:        ordercore.Money{Currency: "JPY"},
			wantCode: ordercore.ECurrencyMismatch,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.m.Add(tt.o)
			if code := ordercore.ErrorCode(err); code != tt.wantCode {
				t.Fatalf("%v.Add(%v) error code = %q (err %v), want %q", tt.m, tt.o, code, err, tt.wantCode)
			}
			if tt.wantCode != "" {
				// A failed addition must not hand back a usable-looking amount.
				if diff := cmp.Diff(ordercore.Money{}, got); diff != "" {
					t.Errorf("%v.Add(%v) on error returned non-zero Money (-want +got):\n%s", tt.m, tt.o, diff)
				}
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%v.Add(%v) mismatch (-want +got):\n%s", tt.m, tt.o, diff)
			}
		})
	}
}

func TestMoneyMul(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		m        ordercore.Money
		n        int64
		want     ordercore.Money
		wantCode string
	}{
		{name: "quantity", m: usd(1999), n: 3, want: usd(5997)},
		{name: "negative factor", m: usd(1999), n: -3, want: usd(-5997)},
		{name: "both negative", m: usd(-7), n: -6, want: usd(42)},
		{name: "zero factor keeps currency", m: usd(1999), n: 0, want: usd(0)},
		{name: "zero amount", m: usd(0), n: math.MaxInt64, want: usd(0)},
		{name: "zero amount min factor", m: usd(0), n: math.MinInt64, want: usd(0)},
		{name: "identity at max", m: usd(math.MaxInt64), n: 1, want: usd(math.MaxInt64)},
		{name: "identity at min", m: usd(math.MinInt64), n: 1, want: usd(math.MinInt64)},
		{name: "negate max", m: usd(math.MaxInt64), n: -1, want: usd(-math.MaxInt64)},
		// -2^32 * 2^31 is exactly MinInt64: the largest negative product must not be
		// mistaken for an overflow.
		{name: "product is exactly min", m: usd(-(1 << 32)), n: 1 << 31, want: usd(math.MinInt64)},
		{name: "min factor times one", m: usd(1), n: math.MinInt64, want: usd(math.MinInt64)},
		{name: "overflow positive", m: usd(math.MaxInt64), n: 2, wantCode: ordercore.EINVALID},
		{name: "overflow positive 2^63", m: usd(1 << 32), n: 1 << 31, wantCode: ordercore.EINVALID},
		{name: "overflow negative", m: usd(math.MaxInt64), n: -2, wantCode: ordercore.EINVALID},
		{name: "overflow negative large", m: usd(math.MinInt64 / 2), n: 3, wantCode: ordercore.EINVALID},
		// The two products whose wrapped result divides back to the operand: -2^63 * -1
		// wraps to -2^63, and -2^63 / -1 is -2^63 again in Go.
		{name: "negate min", m: usd(math.MinInt64), n: -1, wantCode: ordercore.EINVALID},
		{name: "minus one times min", m: usd(-1), n: math.MinInt64, wantCode: ordercore.EINVALID},
		{name: "min squared", m: usd(math.MinInt64), n: math.MinInt64, wantCode: ordercore.EINVALID},
		{name: "max squared", m: usd(math.MaxInt64), n: math.MaxInt64, wantCode: ordercore.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.m.Mul(tt.n)
			if code := ordercore.ErrorCode(err); code != tt.wantCode {
				t.Fatalf("%v.Mul(%d) error code = %q (err %v), want %q", tt.m, tt.n, code, err, tt.wantCode)
			}
			if tt.wantCode != "" {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%v.Mul(%d) mismatch (-want +got):\n%s", tt.m, tt.n, diff)
			}
		})
	}
}

// FuzzMoneyArith checks the overflow detection of Add and Mul against math/big: the
// hand-written int64 checks are exactly the kind of code that is wrong at one corner.
func FuzzMoneyArith(f *testing.F) {
	f.Add(int64(1999), int64(3))
	f.Add(int64(math.MaxInt64), int64(1))
	f.Add(int64(math.MinInt64), int64(-1))
	f.Add(int64(-1), int64(math.MinInt64))
	f.Add(int64(-(1 << 32)), int64(1<<31))
	f.Fuzz(func(t *testing.T, a, b int64) {
		sum := new(big.Int).Add(big.NewInt(a), big.NewInt(b))
		got, err := usd(a).Add(usd(b))
		if sum.IsInt64() {
			if err != nil || got != usd(sum.Int64()) {
				t.Errorf("usd(%d).Add(usd(%d)) = %v, %v; want %v", a, b, got, err, sum)
			}
		} else if ordercore.ErrorCode(err) != ordercore.EINVALID {
			t.Errorf("usd(%d).Add(usd(%d)) = %v, %v; want an overflow error", a, b, got, err)
		}

		prod := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
		got, err = usd(a).Mul(b)
		if prod.IsInt64() {
			if err != nil || got != usd(prod.Int64()) {
				t.Errorf("usd(%d).Mul(%d) = %v, %v; want %v", a, b, got, err, prod)
			}
		} else if ordercore.ErrorCode(err) != ordercore.EINVALID {
			t.Errorf("usd(%d).Mul(%d) = %v, %v; want an overflow error", a, b, got, err)
		}
	})
}

func TestFormatDecimal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		amount int64
		exp    int
		want   string
	}{
		{0, 0, "0"},
		{0, 2, "0.00"},
		{0, 3, "0.000"},
		{5, 2, "0.05"},
		{-5, 2, "-0.05"},
		{99, 2, "0.99"},
		{100, 2, "1.00"},
		{123456, 2, "1234.56"},
		{-123456, 2, "-1234.56"},
		{1000, 0, "1000"},
		{-1000, 0, "-1000"},
		{1, 3, "0.001"},
		{-1, 3, "-0.001"},
		{1234, 3, "1.234"},
		{math.MaxInt64, 0, "9223372036854775807"},
		{math.MaxInt64, 2, "92233720368547758.07"},
		// MinInt64 has no positive counterpart in int64; its magnitude must still print.
		{math.MinInt64, 0, "-9223372036854775808"},
		{math.MinInt64, 2, "-92233720368547758.08"},
		{math.MinInt64 + 1, 3, "-9223372036854775.807"},
	}
	for _, tt := range tests {
		if got := ordercore.FormatDecimal(tt.amount, tt.exp); got != tt.want {
			t.Errorf("FormatDecimal(%d, %d) = %q, want %q", tt.amount, tt.exp, got, tt.want)
		}
	}
}

func TestMoneyString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		m    ordercore.Money
		want string
	}{
		{usd(1234), "12.34 USD"},
		{usd(-1), "-0.01 USD"},
		{usd(0), "0.00 USD"},
		{ordercore.Money{Amount: 1000, Currency: "JPY"}, "1000 JPY"},
		{ordercore.Money{Amount: 1000, Currency: "BHD"}, "1.000 BHD"},
		{ordercore.Money{Amount: 5, Currency: "KWD"}, "0.005 KWD"},
		// An unknown currency has no exponent, so the amount is shown raw and says so
		// rather than guessing a decimal point.
		{ordercore.Money{Amount: 5, Currency: "XXX"}, "5 XXX(minor)"},
		{ordercore.Money{Amount: 5}, "5 (minor)"},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.m, got, tt.want)
		}
	}
}

func TestParseMoney(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s        string
		c        ordercore.Currency
		want     int64
		wantCode string
	}{
		// Exponents: JPY 0, USD 2, BHD and KWD 3.
		{s: "1000", c: "JPY", want: 1000},
		{s: "0", c: "JPY", want: 0},
		{s: "12.34", c: "USD", want: 1234},
		{s: "12.3", c: "USD", want: 1230},
		{s: "12", c: "USD", want: 1200},
		{s: "0.01", c: "USD", want: 1},
		{s: "-0.01", c: "USD", want: -1},
		{s: "-12.34", c: "USD", want: -1234},
		{s: "-0", c: "USD", want: 0},
		{s: "007", c: "USD", want: 700},
		{s: "1.234", c: "BHD", want: 1234},
		{s: "1.2", c: "BHD", want: 1200},
		{s: "0.001", c: "KWD", want: 1},
		{s: "1", c: "KWD", want: 1000},
		{s: "9223372036854775807", c: "JPY", want: math.MaxInt64},
		{s: "-9223372036854775807", c: "JPY", want: -math.MaxInt64},
		{s: "92233720368547758.07", c: "USD", want: math.MaxInt64},
		{s: "9223372036854775.807", c: "BHD", want: math.MaxInt64},

		// More fraction digits than the currency has.
		{s: "1.234", c: "USD", wantCode: ordercore.EINVALID},
		{s: "1.0", c: "JPY", wantCode: ordercore.EINVALID},
		{s: "1.2345", c: "KWD", wantCode: ordercore.EINVALID},
		// Anything but [-]digits[.digits].
		{s: "1e3", c: "USD", wantCode: ordercore.EINVALID},
		{s: " 1", c: "USD", wantCode: ordercore.EINVALID},
		{s: "1 ", c: "USD", wantCode: ordercore.EINVALID},
		{s: "", c: "USD", wantCode: ordercore.EINVALID},
		{s: ".5", c: "USD", wantCode: ordercore.EINVALID},
		{s: "1.", c: "USD", wantCode: ordercore.EINVALID},
		{s: "+1", c: "USD", wantCode: ordercore.EINVALID},
		{s: "-", c: "USD", wantCode: ordercore.EINVALID},
		{s: "-.5", c: "USD", wantCode: ordercore.EINVALID},
		{s: "--1", c: "USD", wantCode: ordercore.EINVALID},
		{s: "1-", c: "USD", wantCode: ordercore.EINVALID},
		{s: "1,000", c: "USD", wantCode: ordercore.EINVALID},
		{s: "1_000", c: "USD", wantCode: ordercore.EINVALID},
		{s: "0x10", c: "USD", wantCode: ordercore.EINVALID},
		{s: "1.2.3", c: "BHD", wantCode: ordercore.EINVALID},
		{s: "1/2", c: "USD", wantCode: ordercore.EINVALID},
		{s: "١", c: "JPY", wantCode: ordercore.EINVALID}, // Arabic-Indic digit one
		{s: "NaN", c: "USD", wantCode: ordercore.EINVALID},
		// Overflow, including by way of the implied fraction digits.
		{s: "9223372036854775808", c: "JPY", wantCode: ordercore.EINVALID},
		{s: "-9223372036854775809", c: "JPY", wantCode: ordercore.EINVALID},
		{s: "92233720368547758.08", c: "USD", wantCode: ordercore.EINVALID},
		{s: "92233720368547759", c: "USD", wantCode: ordercore.EINVALID},
		{s: "99999999999999999999999999", c: "JPY", wantCode: ordercore.EINVALID},
		// Unsupported currencies, including a supported code in the wrong case.
		{s: "1", c: "XXX", wantCode: ordercore.EInvalidCurrency},
		{s: "1", c: "usd", wantCode: ordercore.EInvalidCurrency},
		{s: "1", c: "", wantCode: ordercore.EInvalidCurrency},
	}
	for _, tt := range tests {
		got, err := ordercore.ParseMoney(tt.s, tt.c)
		if code := ordercore.ErrorCode(err); code != tt.wantCode {
			t.Errorf("ParseMoney(%q, %q) error code = %q (err %v), want %q", tt.s, tt.c, code, err, tt.wantCode)
			continue
		}
		if tt.wantCode != "" {
			continue
		}
		want := ordercore.Money{Amount: tt.want, Currency: tt.c}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ParseMoney(%q, %q) mismatch (-want +got):\n%s", tt.s, tt.c, diff)
		}
	}
}

// fuzzCurrencies covers every exponent in use (0, 2, 3).
var fuzzCurrencies = []ordercore.Currency{"JPY", "USD", "BHD", "KWD", "EUR", "CLP", "TND"}

// FuzzParseMoney checks ParseMoney against math/big.Rat, an independent decimal parser:
// whatever ParseMoney accepts must mean exactly the same number to big.Rat, and must print
// and parse back to itself. Acceptance must also match the documented grammar exactly:
// nothing outside it is accepted (big.Rat alone would let "1." or "1e3" through), and
// every plain decimal inside it that fits an int64 is.
func FuzzParseMoney(f *testing.F) {
	for _, s := range []string{"12.34", "-0.01", "1000", "1.234", "0", "007.5", "1e3", ".5", "1.", "+1",
		"9223372036854775807", "9223372036854775808", "92233720368547758.07", "-9223372036854775808"} {
		for ci := range uint8(3) {
			f.Add(s, ci)
		}
	}
	f.Fuzz(func(t *testing.T, s string, ci uint8) {
		c := fuzzCurrencies[int(ci)%len(fuzzCurrencies)]
		exp, ok := c.Exponent()
		if !ok {
			t.Fatalf("test currency %s is not supported", c)
		}
		scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)

		got, err := ordercore.ParseMoney(s, c)
		if err != nil {
			if code := ordercore.ErrorCode(err); code != ordercore.EINVALID {
				t.Fatalf("ParseMoney(%q, %s) error code = %q, want %q", s, c, code, ordercore.EINVALID)
			}
			// Only the grammar and the range justify a rejection.
			if plainDecimal(s, exp) {
				r, ok := new(big.Rat).SetString(s)
				if !ok {
					t.Fatalf("big.Rat rejects plain decimal %q", s)
				}
				minor := new(big.Rat).Mul(r, new(big.Rat).SetInt(scale)).Num()
				// Magnitudes up to MaxInt64 must parse. -2^63 also fits an int64 but is
				// left unasserted here: ParseMoney bounds both signs by MaxInt64.
				if minor.CmpAbs(big.NewInt(math.MaxInt64)) <= 0 {
					t.Fatalf("ParseMoney(%q, %s) rejected a representable amount %v: %v", s, c, minor, err)
				}
			}
			return
		}
		if !plainDecimal(s, exp) {
			t.Fatalf("ParseMoney(%q, %s) accepted a string outside [-]digits[.digits] with at most %d fraction digits: %v", s, c, exp, got)
		}
		if got.Currency != c {
			t.Fatalf("ParseMoney(%q, %s).Currency = %q", s, c, got.Currency)
		}

		r, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("ParseMoney accepted %q as %d %s but big.Rat cannot parse it", s, got.Amount, c)
		}
		r.Mul(r, new(big.Rat).SetInt(scale))
		if !r.IsInt() || r.Num().Cmp(big.NewInt(got.Amount)) != 0 {
			t.Fatalf("ParseMoney(%q, %s) = %d minor units, big.Rat says %s", s, c, got.Amount, r.RatString())
		}

		text := ordercore.FormatDecimal(got.Amount, exp)
		back, err := ordercore.ParseMoney(text, c)
		if err != nil || back != got {
			t.Fatalf("round trip of %q (%s): FormatDecimal gave %q, which parsed to %v, %v", s, c, text, back, err)
		}
	})
}

// plainDecimal reports whether s is [-]digits[.digits] with at most exp fraction digits,
// ASCII only: the grammar ParseMoney documents.
func plainDecimal(s string, exp int) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	digits := func(d string) bool {
		for i := 0; i < len(d); i++ {
			if d[i] < '0' || d[i] > '9' {
				return false
			}
		}
		return len(d) > 0
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return digits(s[:i]) && digits(s[i+1:]) && len(s)-i-1 <= exp
		}
	}
	return digits(s)
}
