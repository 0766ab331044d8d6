ALTER TABLE usage_records ADD COLUMN cost_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN downgraded_from TEXT;

-- One row per (request, budget it was charged to): what budget status and counter
-- rebuilds sum over.
CREATE TABLE usage_charges (
    request_id      TEXT NOT NULL,
    budget_id       TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    ts_ms           BIGINT NOT NULL,
    cost_micros     BIGINT NOT NULL
);
CREATE INDEX usage_charges_by_budget_window ON usage_charges (budget_id, window_start_ms);
CREATE INDEX usage_by_time ON usage_records (ts_ms);
