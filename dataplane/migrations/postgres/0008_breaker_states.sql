-- Circuit-breaker states each gateway reports every few seconds, so the control plane
-- shows them for every replica (not only its own process). Rows of a gateway that stopped
-- reporting age out of every read and are pruned after a day.
CREATE TABLE breaker_states (
    instance       TEXT NOT NULL,
    ip_token       TEXT NOT NULL,
    model          TEXT NOT NULL,
    state          TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (instance, ip_token, model)
);

CREATE INDEX breaker_states_by_time ON breaker_states (updated_at_ms);
