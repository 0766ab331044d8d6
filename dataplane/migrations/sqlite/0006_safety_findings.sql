-- Safety findings (which rule matched whose request, never the matched text), written by
-- every gateway so the control plane shows recent violations and violations over time
-- across replicas and restarts. Pruned with the ledger.
CREATE TABLE safety_findings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms           BIGINT NOT NULL,
    request_id      TEXT NOT NULL,
    principal_kind  TEXT,
    principal_name  TEXT,
    policy          TEXT NOT NULL,
    rule            TEXT NOT NULL,
    category        TEXT NOT NULL,
    stage           TEXT NOT NULL,
    action          TEXT NOT NULL,
    audit           BOOLEAN NOT NULL
);

CREATE INDEX safety_findings_by_time ON safety_findings (ts_ms);
CREATE INDEX safety_findings_by_principal ON safety_findings (principal_name, ts_ms);
