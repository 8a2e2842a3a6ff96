-- Deployments: each `kiln serve` process that serves a registered version records itself here
-- when it starts and marks the record stopped when it shuts down.
CREATE TABLE kiln_deployments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    reference TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    host TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    stopped_at BIGINT
);
CREATE INDEX kiln_deployments_by_version ON kiln_deployments (model, version);
