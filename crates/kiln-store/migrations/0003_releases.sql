-- Release policies, gate evaluations and alias history (Kiln's own; the MLflow tables are
-- untouched). Ids are numbered per model by the single writer (MAX + 1), which keeps the
-- schema portable between SQLite and PostgreSQL.
CREATE TABLE kiln_release_policies (
    name TEXT PRIMARY KEY,
    policy_json TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE kiln_release_evaluations (
    name TEXT NOT NULL,
    id BIGINT NOT NULL,
    alias TEXT NOT NULL,
    version BIGINT NOT NULL,
    holder BIGINT,
    actor TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    override_reason TEXT,
    gates_json TEXT NOT NULL,
    PRIMARY KEY (name, id)
);

CREATE TABLE kiln_alias_history (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    seq BIGINT NOT NULL,
    version BIGINT,
    previous BIGINT,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL,
    reason TEXT,
    evaluation BIGINT,
    PRIMARY KEY (name, alias, seq)
);
