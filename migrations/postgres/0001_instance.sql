-- One row describing this database: its epoch (see store::Instance) and creation time.
CREATE TABLE instance (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
