-- +goose Up
-- expect_rows raises unless a statement changed as many rows as it must: a guard the
-- server judges, so that a transaction whose statements are all guarded this way (or
-- cannot fail silently, as a plain INSERT) can send its COMMIT in the same round trip
-- (postgres/write.go, Apply). The error is raised inside the transaction, which then
-- rolls back whole.
-- +goose StatementBegin
CREATE FUNCTION expect_rows(got BIGINT, want BIGINT, what TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    IF got IS DISTINCT FROM want THEN
        RAISE EXCEPTION '%: % rows changed, want %', what, got, want
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN got;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION expect_rows(BIGINT, BIGINT, TEXT);
