-- Monitoring: feedback labels (joined to the prediction log by request id), the timeline of
-- changes and observations that incidents are read against, incidents, and the monitor's own
-- state (alert instances, silences) as JSON documents by key.
CREATE TABLE kiln_feedback (
    deployment TEXT NOT NULL,
    request_id TEXT NOT NULL,
    label_json TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (deployment, request_id)
);

CREATE TABLE kiln_events (
    id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    actor TEXT NOT NULL,
    summary TEXT NOT NULL,
    detail_json TEXT NOT NULL
);
CREATE INDEX kiln_events_by_subject ON kiln_events (subject, at);

CREATE TABLE kiln_incidents (
    id BIGINT PRIMARY KEY,
    subject TEXT NOT NULL,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    runbook TEXT,
    evidence_json TEXT NOT NULL,
    resolved_at BIGINT,
    resolved_by TEXT,
    resolution TEXT
);

CREATE TABLE kiln_monitor_state (
    key TEXT PRIMARY KEY,
    value_json TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
