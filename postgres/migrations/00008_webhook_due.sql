-- +goose Up
-- The deliverer reads due deliveries endpoint by endpoint, each endpoint's earliest first
-- and at most what its host has call slots for, so that an endpoint with a backlog never
-- hides the others' due deliveries (DueWebhookDeliveries). This index replaces the one
-- over all due deliveries in time order.
CREATE INDEX webhook_deliveries_endpoint_due ON webhook_deliveries (endpoint_id, next_attempt_at, id) WHERE next_attempt_at IS NOT NULL;
DROP INDEX webhook_deliveries_due;

-- +goose Down
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id) WHERE next_attempt_at IS NOT NULL;
DROP INDEX webhook_deliveries_endpoint_due;
