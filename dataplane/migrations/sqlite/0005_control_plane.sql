-- The control plane's own state (standalone mode's resource store, users and teams, the
-- audit log, usage rollups for the dashboard, scheduler bookkeeping). Same database as the
-- ledger, so a usage query joins nothing across systems.

-- Resources created through the admin API (standalone; in Kubernetes the CRs are the
-- source of truth). `document` is the whole resource as JSON, never a secret value.
CREATE TABLE resources (
    kind          TEXT NOT NULL,
    namespace     TEXT NOT NULL,
    name          TEXT NOT NULL,
    generation    BIGINT NOT NULL,
    document      TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);

-- Provider keys given to the admin API with an IPToken (write-only: never returned).
CREATE TABLE provider_secrets (
    name          TEXT NOT NULL,
    secret_key    TEXT NOT NULL,
    secret_value  TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (name, secret_key)
);

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    display_name  TEXT,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE teams (
    name          TEXT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE team_members (
    team      TEXT NOT NULL,
    user_name TEXT NOT NULL,
    PRIMARY KEY (team, user_name)
);

-- A developer's preferred model and provider (used when a request names no model or
-- the alias `default`).
CREATE TABLE preferences (
    principal_kind TEXT NOT NULL,
    principal_name TEXT NOT NULL,
    model          TEXT,
    provider       TEXT,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (principal_kind, principal_name)
);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms      BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    before_doc TEXT,
    after_doc  TEXT
);
CREATE INDEX audit_by_time ON audit_log (ts_ms);

-- Hourly and daily sums of usage_records, maintained by the scheduler; the dashboard and
-- `tollgate usage` read these, not the raw ledger.
CREATE TABLE usage_rollups (
    granularity     TEXT NOT NULL,
    bucket_start_ms BIGINT NOT NULL,
    principal_kind  TEXT NOT NULL,
    principal_name  TEXT NOT NULL,
    team            TEXT NOT NULL,
    model           TEXT NOT NULL,
    provider        TEXT NOT NULL,
    requests        BIGINT NOT NULL,
    errors          BIGINT NOT NULL,
    input_tokens    BIGINT NOT NULL,
    output_tokens   BIGINT NOT NULL,
    cost_micros     BIGINT NOT NULL,
    PRIMARY KEY (granularity, bucket_start_ms, principal_kind, principal_name, team, model, provider)
);
CREATE INDEX usage_rollups_by_principal ON usage_rollups (granularity, principal_name, bucket_start_ms);

CREATE TABLE scheduler_jobs (
    name            TEXT PRIMARY KEY,
    last_run_ms     BIGINT,
    last_success_ms BIGINT,
    next_run_ms     BIGINT,
    last_error      TEXT,
    runs            BIGINT NOT NULL DEFAULT 0,
    failures        BIGINT NOT NULL DEFAULT 0
);
