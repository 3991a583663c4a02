// Package ordercore is the domain vocabulary of ordercore: orders and their statuses, order
// lines, SKUs and stock reservations, money, events, errors, the clock, and the interfaces
// the storage adapters implement.
//
// It imports only the standard library (arch_test.go enforces this). Everything that does
// I/O lives elsewhere: the engine (internal/engine) executes commands through the single
// write path, the stores (sqlite/, later postgres/) persist them, httpapi/ serves them.
package ordercore
