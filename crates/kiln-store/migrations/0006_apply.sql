-- `kiln apply`: what each declared resource was last applied with (its spec, the key of its
-- spec and inputs, its outputs), the lock that keeps two applies from interleaving, and the
-- history of applies.
CREATE TABLE kiln_apply_state (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    step_key TEXT NOT NULL,
    outputs_json TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    apply_id BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);

CREATE TABLE kiln_apply_lock (
    id BIGINT PRIMARY KEY,
    holder TEXT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE kiln_applies (
    id BIGINT PRIMARY KEY,
    actor TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    status TEXT NOT NULL,
    summary_json TEXT NOT NULL
);
