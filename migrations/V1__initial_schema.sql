-- bucketbench schema (SPEC, "The data contract"). Every statement is
-- idempotent so the file is safe to apply by hand on a database that
-- already has it.

CREATE TABLE IF NOT EXISTS songs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_key     text NOT NULL,
    artist_name    text,
    title          text NOT NULL,
    year           integer,
    release        text,
    ingestion_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS movies (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_key                text NOT NULL,
    original_title            text NOT NULL,
    original_language         text,
    budget                    bigint CHECK (budget >= 0),
    is_adult                  boolean,
    release_date              date,
    original_title_normalized text NOT NULL
);

CREATE TABLE IF NOT EXISTS apps (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_key text NOT NULL,
    name       text NOT NULL,
    genre      text,
    rating     double precision,
    version    text,
    size_bytes bigint CHECK (size_bytes >= 0),
    is_awesome boolean NOT NULL
);

CREATE TABLE IF NOT EXISTS rejected_records (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_key   text NOT NULL,
    record_index integer NOT NULL,
    reason       text NOT NULL,
    raw          jsonb,
    rejected_at  timestamptz NOT NULL DEFAULT now()
);

-- The ledger. The primary key on `key` is what makes a load exactly-once:
-- a worker claims a key by inserting its row inside the file's transaction,
-- and a second worker's insert waits on the first and then finds the key
-- taken.
CREATE TABLE IF NOT EXISTS processed_files (
    key            text PRIMARY KEY,
    etag           text,
    size_bytes     bigint,
    status         text NOT NULL CHECK (status IN ('loaded', 'failed')),
    reason         text,
    songs_rows     integer NOT NULL DEFAULT 0,
    movies_rows    integer NOT NULL DEFAULT 0,
    apps_rows      integer NOT NULL DEFAULT 0,
    rejected_count integer NOT NULL DEFAULT 0,
    skipped_count  integer NOT NULL DEFAULT 0,
    model          text NOT NULL,
    processed_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS songs_source_key ON songs (source_key);
CREATE INDEX IF NOT EXISTS movies_source_key ON movies (source_key);
CREATE INDEX IF NOT EXISTS apps_source_key ON apps (source_key);
CREATE INDEX IF NOT EXISTS rejected_records_source_key ON rejected_records (source_key);
