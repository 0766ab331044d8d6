-- Charges travel with their usage record (a JSON array of {"b": budget id, "w": window
-- start}) and a trigger fans them out into usage_charges, so a batch of records with their
-- charges is one INSERT statement: one round trip to the database per group commit.
ALTER TABLE usage_records ADD COLUMN charges TEXT;

CREATE FUNCTION usage_records_charges() RETURNS trigger AS $$
BEGIN
    IF NEW.charges IS NOT NULL THEN
        INSERT INTO usage_charges (request_id, budget_id, window_start_ms, ts_ms, cost_micros)
        SELECT NEW.request_id, c->>'b', (c->>'w')::bigint, NEW.ts_ms, NEW.cost_micros
        FROM jsonb_array_elements(NEW.charges::jsonb) AS c;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER usage_records_charges AFTER INSERT ON usage_records
FOR EACH ROW EXECUTE FUNCTION usage_records_charges();
