-- Kiln dataset versions: one row per (dataset name, content digest). `version` numbers the
-- digests of one name in the order they were first seen.
CREATE TABLE kiln_dataset_versions (
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    version BIGINT NOT NULL,
    source TEXT NOT NULL,
    format TEXT NOT NULL,
    schema_json TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    profile_json TEXT,
    validation_json TEXT,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (name, digest),
    UNIQUE (name, version)
);
