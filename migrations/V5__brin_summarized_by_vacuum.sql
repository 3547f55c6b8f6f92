-- BRIN ranges summarised by (auto)vacuum, not by a work item per range.
--
-- Migration V3 created each table's `load_id` BRIN index with
-- `autosummarize = on`: every time an insert starts a new range (32 pages,
-- 256 kB of rows), the backend asks autovacuum to summarise the range
-- before it through a work-item queue. That queue holds 256 items for the
-- whole cluster and autovacuum empties it only when it visits the database
-- (every `autovacuum_naptime`, a minute by default), so a steady load
-- fills it within a few passes. From then on every new range's request is
-- dropped, and PostgreSQL writes a LOG line for each one ("request for
-- BRIN range summarization for index ... was not recorded", with its
-- context and statement) into the server's log: 47 dropped requests and
-- 141 log lines for each `seed` pass, measured, for nothing.
--
-- Without autosummarize, the ranges a load adds stay unsummarised until
-- the next VACUUM of the table, which autovacuum runs on its own once
-- enough rows have been inserted (`autovacuum_vacuum_insert_threshold` and
-- `_scale_factor`, PostgreSQL 13 and later); a BRIN scan reads an
-- unsummarised range whole, so the documented lookup of a file's rows
-- stays correct and reads at most the rows appended since that vacuum.
-- That is what a dropped request already meant, without the log lines.
--
-- Changes index options only: no row, ledger entry or index entry is
-- rewritten. Upgrades a V4 database in place.

ALTER INDEX songs_load_id SET (autosummarize = off);
ALTER INDEX movies_load_id SET (autosummarize = off);
ALTER INDEX apps_load_id SET (autosummarize = off);
ALTER INDEX rejected_records_load_id SET (autosummarize = off);
