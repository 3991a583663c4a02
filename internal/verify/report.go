package verify

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"ordercore"
)

// ReportPerRuleMax bounds the violations Report prints for one rule: one corrupt SKU can
// break thousands of orders, and the first fifty say as much as all of them. The rest are
// counted ("... and N more").
const ReportPerRuleMax = 50

// Report writes a readable report: counts checked (skus, orders, ledger rows, events,
// payments, refunds, money ledger rows) then one line per violation, grouped by rule, at
// most 50 per rule with "... and N more".
// Rules come in the order of Rules (unknown rule names last, by name). Write errors are
// ignored: the report is for a person, and the caller decides the exit status from vs.
func Report(w io.Writer, vs []Violation, snap *ordercore.Snapshot) {
	var b strings.Builder
	if snap != nil {
		lines := 0
		for _, o := range snap.Orders {
			lines += len(o.Lines)
		}
		fmt.Fprintf(&b, "checked %d skus, %d orders (%d lines), %d ledger rows, %d events, %d payments, %d refunds, %d money ledger rows\n",
			len(snap.SKUs), len(snap.Orders), lines, len(snap.Ledger), len(snap.Events),
			len(snap.Payments), len(snap.Refunds), len(snap.MoneyLedger))
	}
	if len(vs) == 0 {
		b.WriteString("no violations\n")
		_, _ = io.WriteString(w, b.String())
		return
	}
	byRule := map[string][]Violation{}
	for _, v := range vs {
		byRule[v.Rule] = append(byRule[v.Rule], v)
	}
	fmt.Fprintf(&b, "%s of %s\n", plural(len(vs), "violation"), plural(len(byRule), "rule"))
	for _, rule := range reportOrder(byRule) {
		group := byRule[rule]
		fmt.Fprintf(&b, "\n%s: %d\n", rule, len(group))
		for _, v := range group[:min(len(group), ReportPerRuleMax)] {
			fmt.Fprintf(&b, "  %s: %s\n", v.Subject, v.Detail)
		}
		if n := len(group) - ReportPerRuleMax; n > 0 {
			fmt.Fprintf(&b, "  ... and %d more\n", n)
		}
	}
	_, _ = io.WriteString(w, b.String())
}

// reportOrder lists the rules present in byRule: known ones in the order of Rules, then any
// others sorted by name.
func reportOrder(byRule map[string][]Violation) []string {
	var out, other []string
	for _, r := range Rules {
		if _, ok := byRule[r]; ok {
			out = append(out, r)
		}
	}
	for r := range byRule {
		if !slices.Contains(Rules, r) {
			other = append(other, r)
		}
	}
	slices.Sort(other)
	return append(out, other...)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
