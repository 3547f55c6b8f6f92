-- Cheaper rows (docs/performance.md, "The database's CPU per row").
--
-- Every data row and every ledger row now carries `load_id`, the 64-bit id
-- of the transaction that wrote it (`txid_current()`, which counts epochs
-- and so never wraps). A file's rows, rejected records and ledger row
-- commit in one transaction, so they share it: a file's rows are the rows
-- with its ledger row's `load_id` and its `source_key`.
--
-- That replaces the hash index on `source_key` in each data table, the
-- largest per-row cost of a load after the primary key, with a BRIN index
-- on `load_id`: transaction ids grow with time and rows are appended in
-- time order, so a few hundred bytes of min/max summaries per 32 pages find
-- a file's rows, and an insert costs a fraction of a hash index entry.
-- `autosummarize` lets autovacuum summarise each range as it fills. Find a
-- file's rows with
--
--   SELECT * FROM songs WHERE source_key = $1
--     AND load_id = (SELECT load_id FROM processed_files WHERE key = $1);
--
-- The identity sequences hand out ids 1,000 at a time per session instead
-- of one (`nextval` took a lock and a WAL record per row); ids stay unique
-- and increasing within a session, and a session that ends leaves the
-- rest of its block unused, so gaps are normal.
--
-- Upgrades a V2 database in place, rows and ledger kept. Rows loaded
-- before this migration get their file's ledger `load_id`; those files'
-- transactions are long gone, so the ledger numbers them -1, -2, ... in
-- the order they were processed (never a transaction id, which is
-- positive). A row whose file has no ledger row gets 0. Every row of the
-- data tables is rewritten once.

ALTER TABLE processed_files ADD COLUMN load_id bigint;
UPDATE processed_files p SET load_id = -n.n
    FROM (SELECT key_sha256, row_number() OVER (ORDER BY processed_at, key) AS n
          FROM processed_files) n
    WHERE n.key_sha256 = p.key_sha256;
ALTER TABLE processed_files
    ALTER COLUMN load_id SET DEFAULT txid_current(),
    ALTER COLUMN load_id SET NOT NULL;

ALTER TABLE songs ADD COLUMN load_id bigint;
UPDATE songs s SET load_id = p.load_id FROM processed_files p WHERE p.key = s.source_key;
UPDATE songs SET load_id = 0 WHERE load_id IS NULL;
ALTER TABLE songs
    ALTER COLUMN load_id SET DEFAULT txid_current(),
    ALTER COLUMN load_id SET NOT NULL,
    ALTER COLUMN id SET CACHE 1000;
DROP INDEX songs_source_key;
CREATE INDEX songs_load_id ON songs USING brin (load_id)
    WITH (pages_per_range = 32, autosummarize = on);

ALTER TABLE movies ADD COLUMN load_id bigint;
UPDATE movies m SET load_id = p.load_id FROM processed_files p WHERE p.key = m.source_key;
UPDATE movies SET load_id = 0 WHERE load_id IS NULL;
ALTER TABLE movies
    ALTER COLUMN load_id SET DEFAULT txid_current(),
    ALTER COLUMN load_id SET NOT NULL,
    ALTER COLUMN id SET CACHE 1000;
DROP INDEX movies_source_key;
CREATE INDEX movies_load_id ON movies USING brin (load_id)
    WITH (pages_per_range = 32, autosummarize = on);

ALTER TABLE apps ADD COLUMN load_id bigint;
UPDATE apps a SET load_id = p.load_id FROM processed_files p WHERE p.key = a.source_key;
UPDATE apps SET load_id = 0 WHERE load_id IS NULL;
ALTER TABLE apps
    ALTER COLUMN load_id SET DEFAULT txid_current(),
    ALTER COLUMN load_id SET NOT NULL,
    ALTER COLUMN id SET CACHE 1000;
DROP INDEX apps_source_key;
CREATE INDEX apps_load_id ON apps USING brin (load_id)
    WITH (pages_per_range = 32, autosummarize = on);

ALTER TABLE rejected_records ADD COLUMN load_id bigint;
UPDATE rejected_records r SET load_id = p.load_id FROM processed_files p WHERE p.key = r.source_key;
UPDATE rejected_records SET load_id = 0 WHERE load_id IS NULL;
ALTER TABLE rejected_records
    ALTER COLUMN load_id SET DEFAULT txid_current(),
    ALTER COLUMN load_id SET NOT NULL,
    ALTER COLUMN id SET CACHE 1000;
DROP INDEX rejected_records_source_key;
CREATE INDEX rejected_records_load_id ON rejected_records USING brin (load_id)
    WITH (pages_per_range = 32, autosummarize = on);
