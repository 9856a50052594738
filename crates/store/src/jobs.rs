//! Background jobs that run once for all replicas.
//!
//! A job's schedule cuts time into numbered slots (`now / period`). Each replica that
//! finds a slot due tries to claim it by inserting its row; the primary key lets
//! exactly one insert win, on SQLite and on PostgreSQL alike, so the job runs once per
//! slot however many replicas are up. A replica that dies mid-run leaves its slot
//! unfinished; the next slot runs as usual.

use sqlx::Row;

use crate::{Result, Store, on_pool};

/// One run of a job, claimed or finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRun {
    pub job: String,
    pub slot: i64,
    /// The replica that claimed it.
    pub holder: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `ok`, or what went wrong, once finished.
    pub outcome: Option<String>,
}

impl Store {
    /// Claims `slot` of `job` for `holder`; true when this call won it (and must run
    /// the job), false when some replica already had.
    pub async fn claim_job(&self, job: &str, slot: i64, holder: &str) -> Result<bool> {
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO job_runs (job, slot, holder, started_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (job, slot) DO NOTHING",
            )
            .bind(job)
            .bind(slot)
            .bind(holder)
            .bind(shopgraph_core::now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Records how the claimed run of `slot` ended.
    pub async fn finish_job(&self, job: &str, slot: i64, outcome: &str) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE job_runs SET finished_at = $1, outcome = $2 WHERE job = $3 AND slot = $4",
            )
            .bind(shopgraph_core::now_ms())
            .bind(outcome)
            .bind(job)
            .bind(slot)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The latest `limit` runs of every job, newest first.
    pub async fn job_runs(&self, limit: u32) -> Result<Vec<JobRun>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query(
                "SELECT job, slot, holder, started_at, finished_at, outcome FROM job_runs \
                 ORDER BY started_at DESC, job LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| -> Result<JobRun> {
                Ok(JobRun {
                    job: r.try_get("job")?,
                    slot: r.try_get("slot")?,
                    holder: r.try_get("holder")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    outcome: r.try_get("outcome")?,
                })
            })
            .collect::<Result<Vec<_>>>()?
        });
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Store, StoreOptions};

    #[tokio::test]
    async fn a_slot_is_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("jobs.db").display());
        let a = Store::open(&StoreOptions::new(&url)).await.unwrap();
        let b = Store::open(&StoreOptions::new(&url)).await.unwrap();
        assert!(a.claim_job("segments", 7, "a").await.unwrap());
        assert!(!b.claim_job("segments", 7, "b").await.unwrap());
        assert!(b.claim_job("segments", 8, "b").await.unwrap());
        assert!(b.claim_job("rules", 7, "b").await.unwrap());
        a.finish_job("segments", 7, "ok").await.unwrap();
        let runs = a.job_runs(10).await.unwrap();
        assert_eq!(runs.len(), 3);
        let seven = runs.iter().find(|r| r.job == "segments" && r.slot == 7).unwrap();
        assert_eq!((seven.holder.as_str(), seven.outcome.as_deref()), ("a", Some("ok")));
        assert!(seven.finished_at.is_some());
    }
}
