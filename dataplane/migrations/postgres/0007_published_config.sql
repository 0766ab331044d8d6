-- The configuration the operator last published (the same document as the gateway
-- ConfigMap), so gateways sharing this database pick a change up within about a second
-- instead of waiting for the kubelet to refresh the mounted ConfigMap. One row.
CREATE TABLE published_config (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    hash             TEXT NOT NULL,
    config           TEXT NOT NULL,
    published_at_ms  BIGINT NOT NULL
);
