-- Keys of any length (docs/contract.md, "A pass": nothing stops a pass).
--
-- A b-tree entry must fit in a third of a page (2,704 bytes), so the V1
-- primary key on processed_files.key refused any longer key, and the
-- source_key indexes refused rows of such a file. Uniqueness now holds on
-- the SHA-256 of the full key (32 bytes whatever the key), and lookups by
-- key use hash indexes, which store a 4-byte hash code and so have no size
-- limit and serve `=` and `= ANY(...)`. The full key stays in `key`.
-- Upgrades a V1 database in place, rows and ledger kept.

-- convert_to() is only STABLE because in general it depends on the
-- database encoding, which is fixed for a database's lifetime; the key's
-- UTF-8 bytes are what the hash is of.
CREATE OR REPLACE FUNCTION bucketbench_key_sha256(key text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT sha256(convert_to(key, 'UTF8')) $$;

ALTER TABLE processed_files
    ADD COLUMN key_sha256 bytea GENERATED ALWAYS AS (bucketbench_key_sha256(key)) STORED;
ALTER TABLE processed_files DROP CONSTRAINT processed_files_pkey;
ALTER TABLE processed_files ALTER COLUMN key SET NOT NULL;
ALTER TABLE processed_files ADD CONSTRAINT processed_files_pkey PRIMARY KEY (key_sha256);
CREATE INDEX processed_files_key ON processed_files USING hash (key);

DROP INDEX IF EXISTS songs_source_key;
DROP INDEX IF EXISTS movies_source_key;
DROP INDEX IF EXISTS apps_source_key;
DROP INDEX IF EXISTS rejected_records_source_key;
CREATE INDEX songs_source_key ON songs USING hash (source_key);
CREATE INDEX movies_source_key ON movies USING hash (source_key);
CREATE INDEX apps_source_key ON apps USING hash (source_key);
CREATE INDEX rejected_records_source_key ON rejected_records USING hash (source_key);
