package httpapi

import (
	"context"
	"net/http"
	"time"

	"ordercore"
	"ordercore/internal/engine"
)

// SKU is a SKU as the API shows it.
type SKU struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Price     ordercore.Money `json:"price"`
	Total     int64           `json:"total" doc:"Units ever stocked"`
	Reserved  int64           `json:"reserved" doc:"Units held by unpaid orders"`
	Sold      int64           `json:"sold" doc:"Units of paid orders"`
	Available int64           `json:"available" doc:"total - reserved - sold, never negative"`
	Version   int64           `json:"version"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

func skuView(s ordercore.SKU) SKU {
	return SKU{ID: s.ID, Name: s.Name, Price: s.Price, Total: s.Total, Reserved: s.Reserved, Sold: s.Sold,
		Available: s.Available(), Version: s.Version, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
}

// MoneyBody is a price in minor units of an ISO-4217 currency.
type MoneyBody struct {
	Amount   int64  `json:"amount" minimum:"0" maximum:"1000000000000" doc:"Minor units (cents for USD, yen for JPY)"`
	Currency string `json:"currency" pattern:"^[A-Z]{3}$" doc:"ISO-4217 code"`
}

// AmountBody is a payment's or a refund's amount: up to what an order can come to
// (limit.OrderAmountMax, 999 units of 100 lines at the highest price), more than a price.
type AmountBody struct {
	Amount   int64  `json:"amount" minimum:"0" maximum:"99900000000000000" doc:"Minor units (cents for USD, yen for JPY)"`
	Currency string `json:"currency" pattern:"^[A-Z]{3}$" doc:"ISO-4217 code"`
}

type createSKUInput struct {
	IdemKey string `header:"Idempotency-Key" maxLength:"255" doc:"Makes retries safe: a repeat with the same key and body returns the stored response"`
	Body    struct {
		ID    string    `json:"id" minLength:"1" maxLength:"64" pattern:"^[A-Za-z0-9_.:-]+$"`
		Name  string    `json:"name" minLength:"1" maxLength:"200"`
		Price MoneyBody `json:"price"`
		Stock int64     `json:"stock" minimum:"0" maximum:"1000000000" doc:"Initial units in stock"`
	}
}

type skuOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Body     SKU
}

func (s *Server) createSKU(ctx context.Context, in *createSKUInput) (*skuOutput, error) {
	b := in.Body
	cmd := engine.CreateSKU{ID: b.ID, Name: b.Name, Price: ordercore.Money{Amount: b.Price.Amount, Currency: ordercore.Currency(b.Price.Currency)}, Stock: b.Stock}
	status, v, replayed, err := submit[ordercore.SKU](ctx, s, cmd, "create-sku", in.IdemKey, b, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	return &skuOutput{Status: status, Replayed: replayedHeader(replayed), Body: skuView(v)}, nil
}

type skuIDInput struct {
	ID string `path:"id" maxLength:"64"`
}

func (s *Server) getSKU(ctx context.Context, in *skuIDInput) (*skuOutput, error) {
	v, err := s.cfg.Reader.SKU(ctx, in.ID)
	if err != nil {
		return nil, problemOf(err)
	}
	return &skuOutput{Status: http.StatusOK, Body: skuView(v)}, nil
}

type restockInput struct {
	ID      string `path:"id" maxLength:"64"`
	IdemKey string `header:"Idempotency-Key" maxLength:"255"`
	Body    struct {
		Quantity int64 `json:"quantity" minimum:"1" maximum:"1000000000"`
	}
}

func (s *Server) restock(ctx context.Context, in *restockInput) (*skuOutput, error) {
	cmd := engine.Restock{SKU: in.ID, Quantity: in.Body.Quantity}
	status, v, replayed, err := submit[ordercore.SKU](ctx, s, cmd, "restock-sku "+in.ID, in.IdemKey, in.Body, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return &skuOutput{Status: status, Replayed: replayedHeader(replayed), Body: skuView(v)}, nil
}
