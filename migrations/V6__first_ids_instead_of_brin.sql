-- Each ledger row records, per data table, the first identity value its
-- transaction could give a row (docs/performance.md, "Finding a file's rows
-- without an index of its own"), and the BRIN indexes on `load_id` go.
--
-- A file's claim (its ledger row, inserted first in its transaction) draws
-- `nextval` of each table's identity sequence through these columns'
-- defaults, before the transaction writes any row, on the same session; a
-- session's identity values only grow, so every row of the file has an id
-- at or above that value. The primary key then finds a file's rows: walk it from
-- the first id, keep the rows with the file's key and `load_id`, stop once
-- the ledger's count of them is found. A BRIN insert cost PostgreSQL 15
-- about an eighth of a COPY's instructions per row (it re-reads its range
-- map for every row); four `nextval`s per file cost nothing a row.
--
--   SELECT s.* FROM processed_files p, LATERAL (
--       SELECT * FROM songs s WHERE s.id >= p.songs_first_id
--         AND s.load_id = p.load_id AND s.source_key = p.key
--       ORDER BY s.id LIMIT p.songs_rows) s
--   WHERE p.key = $1;
--
-- Upgrades a V5 database in place, rows and ledger kept: each ledger row
-- gets the smallest id of its file's rows in each table (NULL where the
-- file has none there, which the lookup reads as no rows).

ALTER TABLE processed_files
    ADD COLUMN songs_first_id bigint,
    ADD COLUMN movies_first_id bigint,
    ADD COLUMN apps_first_id bigint,
    ADD COLUMN rejected_first_id bigint;

UPDATE processed_files p SET songs_first_id = f.first_id
    FROM (SELECT source_key, load_id, min(id) AS first_id FROM songs GROUP BY 1, 2) f
    WHERE f.source_key = p.key AND f.load_id = p.load_id;
UPDATE processed_files p SET movies_first_id = f.first_id
    FROM (SELECT source_key, load_id, min(id) AS first_id FROM movies GROUP BY 1, 2) f
    WHERE f.source_key = p.key AND f.load_id = p.load_id;
UPDATE processed_files p SET apps_first_id = f.first_id
    FROM (SELECT source_key, load_id, min(id) AS first_id FROM apps GROUP BY 1, 2) f
    WHERE f.source_key = p.key AND f.load_id = p.load_id;
UPDATE processed_files p SET rejected_first_id = f.first_id
    FROM (SELECT source_key, load_id, min(id) AS first_id FROM rejected_records GROUP BY 1, 2) f
    WHERE f.source_key = p.key AND f.load_id = p.load_id;

-- Defaults, not values the claim names: a worker of the previous release
-- still in a pass while this migration is applied claims through them too,
-- so no ledger row is ever written without its first ids. Set after the
-- backfill, so that the rows above keep theirs.
ALTER TABLE processed_files
    ALTER COLUMN songs_first_id SET DEFAULT nextval('songs_id_seq'),
    ALTER COLUMN movies_first_id SET DEFAULT nextval('movies_id_seq'),
    ALTER COLUMN apps_first_id SET DEFAULT nextval('apps_id_seq'),
    ALTER COLUMN rejected_first_id SET DEFAULT nextval('rejected_records_id_seq');

DROP INDEX IF EXISTS songs_load_id;
DROP INDEX IF EXISTS movies_load_id;
DROP INDEX IF EXISTS apps_load_id;
DROP INDEX IF EXISTS rejected_records_load_id;
