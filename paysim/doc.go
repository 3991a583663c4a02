// Package paysim is a payment channel simulator: an HTTP server that plays a channel
// such as WeChat Pay or Stripe for ordercore's development and tests. It opens trades,
// serves a hosted page where a "shopper" pays or fails them, closes and refunds them,
// sends signed notifications with WeChat Pay's retry schedule, and serves daily
// statements. Its state lives in memory and dies with the process: it is a simulator,
// not a ledger.
//
// Its point is the misbehaviour real channels show, each behind a knob in Faults and
// reproducible from Config.Seed: duplicated, delayed, dropped, forged and tampered
// notifications; underpayments; calls that take effect but time out; payments that land
// after a close; second payments of an order; abnormal refunds; plain 500s.
//
// The protocol (wire types, signature, statement format) belongs to channel/sim, which
// paysim imports; channel/sim must never import paysim. paysim imports the standard
// library, the root package and channel/sim, nothing of the engine or the stores: it is
// the outside world.
package paysim
