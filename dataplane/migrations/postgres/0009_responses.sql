-- Stored answers of the OpenAI Responses API (`store`, `previous_response_id`), each scoped
-- to the principal that created it: a conversation is the chain of previous_response_id
-- links, read back with its input and output items. Pruned by the scheduler's retention.
CREATE TABLE responses (
    id                    TEXT PRIMARY KEY,
    principal_kind        TEXT NOT NULL,
    principal_name        TEXT NOT NULL,
    created_at_ms         BIGINT NOT NULL,
    previous_response_id  TEXT,
    model                 TEXT NOT NULL,
    -- This request's own input items: a JSON array.
    input_items           TEXT NOT NULL,
    -- The whole Response object as returned to the client: a JSON object.
    response              TEXT NOT NULL
);

CREATE INDEX responses_by_time ON responses (created_at_ms);
CREATE INDEX responses_by_principal ON responses (principal_kind, principal_name, created_at_ms);
