-- Background jobs that must run once for all replicas (segments, association rules).
-- A job's schedule cuts time into slots; the replica that inserts the row for a slot
-- runs it, and every other replica sees the row and skips it. The row also says who
-- ran it and how it ended, for the console and for tests.
CREATE TABLE job_runs (
    job TEXT NOT NULL,
    slot BIGINT NOT NULL,
    holder TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    outcome TEXT,
    PRIMARY KEY (job, slot)
);
