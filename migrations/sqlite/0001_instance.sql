-- One row describing this database: its epoch (see store::Instance) and creation time.
CREATE TABLE instance (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);
