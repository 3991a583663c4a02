package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The per-SKU stock history that clients observe, checked for linearizability with
// porcupine: each operation is a reservation (an order placed or refused for stock), a
// release (a cancel), a commit (a payment) or a read of the SKU's balance, from its first
// request to its definitive answer (retries of one keyed request are one operation).

type opKindH int

const (
	opReserve opKindH = iota
	opRelease
	opCommit
	opRead
)

type stockOp struct {
	SKU  string
	Kind opKindH
	Qty  int64
}

type stockOut struct {
	OK                    bool // reserve: placed (true) or insufficient_stock (false)
	Avail, Reserved, Sold int64
}

type stockState struct{ Avail, Reserved, Sold int64 }

// stockModel is one SKU with `stock` units: what a single, atomic copy of the two-phase
// balance allows.
func stockModel(stock int64) porcupine.Model {
	return porcupine.Model{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			var order []string
			for _, op := range h {
				sku := op.Input.(stockOp).SKU
				if _, ok := by[sku]; !ok {
					order = append(order, sku)
				}
				by[sku] = append(by[sku], op)
			}
			out := make([][]porcupine.Operation, 0, len(order))
			for _, sku := range order {
				out = append(out, by[sku])
			}
			return out
		},
		Init: func() any { return stockState{Avail: stock} },
		Step: func(state, input, output any) (bool, any) {
			s, in, out := state.(stockState), input.(stockOp), output.(stockOut)
			switch in.Kind {
			case opReserve:
				if !out.OK {
					return s.Avail < in.Qty, s
				}
				if s.Avail < in.Qty {
					return false, s
				}
				return true, stockState{s.Avail - in.Qty, s.Reserved + in.Qty, s.Sold}
			case opRelease:
				if s.Reserved < in.Qty {
					return false, s
				}
				return true, stockState{s.Avail + in.Qty, s.Reserved - in.Qty, s.Sold}
			case opCommit:
				if s.Reserved < in.Qty {
					return false, s
				}
				return true, stockState{s.Avail, s.Reserved - in.Qty, s.Sold + in.Qty}
			default:
				return out.Avail == s.Avail && out.Reserved == s.Reserved && out.Sold == s.Sold, s
			}
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(stockOp), output.(stockOut)
			switch in.Kind {
			case opReserve:
				return fmt.Sprintf("reserve(%d) -> %v", in.Qty, out.OK)
			case opRelease:
				return fmt.Sprintf("release(%d)", in.Qty)
			case opCommit:
				return fmt.Sprintf("commit(%d)", in.Qty)
			}
			return fmt.Sprintf("read -> avail %d reserved %d sold %d", out.Avail, out.Reserved, out.Sold)
		},
		DescribeState: func(state any) string {
			s := state.(stockState)
			return fmt.Sprintf("avail %d reserved %d sold %d", s.Avail, s.Reserved, s.Sold)
		},
	}
}

// historyLog collects operations from many clients.
type historyLog struct {
	once sync.Once
	base time.Time
	mu   sync.Mutex
	ops  []porcupine.Operation
}

func (h *historyLog) now() int64 {
	h.once.Do(func() { h.base = time.Now() })
	return int64(time.Since(h.base))
}

// add records an operation that began at call (from now()) and has just ended.
func (h *historyLog) add(sku string, client int, in stockOp, out stockOut, call int64) {
	in.SKU = sku
	ret := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret})
}

func (h *historyLog) operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// TestStockModelCatchesAnomalies: the model TestCluster checks with accepts a legal
// concurrent history and rejects an oversell, a lost release and a stale read, so a
// cluster that did any of these could not pass.
func TestStockModelCatchesAnomalies(t *testing.T) {
	op := func(client int, call, ret int64, in stockOp, out stockOut) porcupine.Operation {
		in.SKU = "s"
		return porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret}
	}
	reserve := func(q int64) stockOp { return stockOp{Kind: opReserve, Qty: q} }
	read := stockOp{Kind: opRead}
	for _, c := range []struct {
		name string
		ok   bool
		ops  []porcupine.Operation
	}{
		{"concurrent reservations within stock, one refused", true, []porcupine.Operation{
			op(0, 0, 10, reserve(2), stockOut{OK: true}),
			op(1, 1, 9, reserve(2), stockOut{OK: false}),
			op(2, 2, 8, reserve(1), stockOut{OK: true}),
			op(3, 11, 12, read, stockOut{Avail: 0, Reserved: 3}),
		}},
		{"oversell: both reservations succeed past stock", false, []porcupine.Operation{
			op(0, 0, 10, reserve(2), stockOut{OK: true}),
			op(1, 1, 9, reserve(2), stockOut{OK: true}),
		}},
		{"refused while stock was there", false, []porcupine.Operation{
			op(0, 0, 1, reserve(1), stockOut{OK: false}),
		}},
		{"release before the reservation it releases", false, []porcupine.Operation{
			op(0, 0, 1, stockOp{Kind: opRelease, Qty: 1}, stockOut{OK: true}),
			op(1, 2, 3, reserve(1), stockOut{OK: true}),
		}},
		{"stale read after a completed commit", false, []porcupine.Operation{
			op(0, 0, 1, reserve(2), stockOut{OK: true}),
			op(0, 2, 3, stockOp{Kind: opCommit, Qty: 2}, stockOut{OK: true}),
			op(1, 4, 5, read, stockOut{Avail: 1, Reserved: 2}),
		}},
	} {
		got := porcupine.CheckOperations(stockModel(3), c.ops)
		if got != c.ok {
			t.Errorf("%s: linearizable = %v, want %v", c.name, got, c.ok)
		}
	}
}
