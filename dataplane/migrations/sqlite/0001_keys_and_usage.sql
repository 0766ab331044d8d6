CREATE TABLE virtual_keys (
    id             TEXT PRIMARY KEY,
    key_hash       BLOB NOT NULL UNIQUE,
    display_prefix TEXT NOT NULL,
    name           TEXT NOT NULL,
    principal_kind TEXT NOT NULL,
    principal_name TEXT NOT NULL,
    role           TEXT NOT NULL,
    team           TEXT,
    allowed_models TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT,
    revoked_at_ms  BIGINT
);

CREATE TABLE usage_records (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id          TEXT NOT NULL,
    ts_ms               BIGINT NOT NULL,
    key_id              TEXT,
    principal_kind      TEXT,
    principal_name      TEXT,
    endpoint            TEXT NOT NULL,
    model               TEXT,
    upstream_model      TEXT,
    provider            TEXT,
    ip_token            TEXT,
    stream              BOOLEAN NOT NULL,
    input_tokens        BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    latency_ms          BIGINT NOT NULL,
    status              INTEGER NOT NULL,
    error_class         TEXT
);
CREATE INDEX usage_by_principal_time ON usage_records (principal_name, ts_ms);
CREATE INDEX usage_by_model_time ON usage_records (model, ts_ms);
CREATE INDEX usage_by_request ON usage_records (request_id);
