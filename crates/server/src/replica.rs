//! Several `shopgraph serve` replicas on one PostgreSQL.
//!
//! The store is the one source of truth; each replica keeps its own graph, search
//! index and recommender in memory. Two background tasks keep a replica in step with
//! the others:
//!
//! - the **follower** reads the store's sync marks every `follow_ms` and takes in what
//!   changed since it last looked: products (graph, search, the assistant's cache),
//!   users, interests, events (the graph's cursor), segments and association rules.
//!   `follow_ms` is the bound on how stale a replica's answers are. New events reach
//!   the fitted recommender at its next refit (`refit_secs`), as they do on one server.
//! - the **scheduler** runs the jobs that write the store for everyone (segments,
//!   association rules) once per period for all replicas together: each replica tries
//!   to claim the period's row in `job_runs`, and only the one whose insert wins runs.

use std::sync::Arc;
use std::time::Duration;

use shopgraph_core::{InterestId, ProductId, UserId};
use shopgraph_insight::RuleParams;
use shopgraph_insight::segments::SegmentParams;
use shopgraph_insight::shopping;
use shopgraph_search::ProductDoc;
use shopgraph_store::SyncMarks;

use crate::insight::{Failure, mine, save_rules, save_segments};
use crate::{AppState, Platform};

/// Rows read from the store at a time while following.
const PAGE: u32 = 5_000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What one look at the store took in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Followed {
    pub products: usize,
    pub users: usize,
    pub interests: usize,
    pub events: usize,
    pub segments: bool,
    pub rules: bool,
}

impl Followed {
    fn any(&self) -> bool {
        *self != Followed::default()
    }
}

impl Platform {
    /// Takes in what the store holds beyond `seen` (the marks of the last look), and
    /// moves `seen` on. Writes of this replica's own come round again and are applied
    /// once more, which changes nothing: every step is an upsert.
    pub async fn follow(&self, seen: &mut SyncMarks) -> Result<Followed, BoxError> {
        let marks = self.store.sync_marks().await?;
        let mut took = Followed::default();

        // Products: the graph, the assistant's cache and the search index. A row is
        // read again in its own millisecond (`>=`), in case a writer committed in it
        // after the marks were read.
        if (marks.products, marks.products_updated_at) != (seen.products, seen.products_updated_at)
        {
            let categories = self.search.categories();
            let shop = Arc::clone(&self.tools().shop);
            let mut after = ProductId(0);
            loop {
                let page = self
                    .store
                    .products_changed_since(seen.products_updated_at, after, PAGE)
                    .await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                {
                    let mut graph = self.graph.write().unwrap_or_else(|e| e.into_inner());
                    for product in &page {
                        graph.upsert_product(product);
                    }
                }
                let ids: Vec<ProductId> = page.iter().map(|p| p.id).collect();
                let popularity = self.store.product_popularity(Some(&ids)).await?;
                let mut docs = Vec::new();
                let mut hidden = Vec::new();
                for product in &page {
                    shop.product_changed(product);
                    if product.hidden {
                        hidden.push(product.id);
                    } else {
                        let n = popularity.get(&product.id).map_or(0, |&n| n.max(0) as u64);
                        docs.push(ProductDoc::new(product, &categories, n));
                    }
                }
                self.search.upsert(&docs)?;
                self.search.remove(&hidden)?;
                took.products += page.len();
            }
            if took.products > 0 {
                self.search.commit("follow")?;
            }
        }

        if (marks.users, marks.users_updated_at) != (seen.users, seen.users_updated_at) {
            let mut after = UserId(0);
            loop {
                let page =
                    self.store.users_changed_since(seen.users_updated_at, after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                let mut graph = self.graph.write().unwrap_or_else(|e| e.into_inner());
                for user in &page {
                    graph.upsert_user(user);
                }
                took.users += page.len();
            }
        }

        let mut after = InterestId(seen.last_interest);
        loop {
            let page = self.store.interests_page(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            let mut graph = self.graph.write().unwrap_or_else(|e| e.into_inner());
            for interest in &page {
                graph.add_interest(interest);
            }
            took.interests += page.len();
        }

        let before = self.graph.read().unwrap_or_else(|e| e.into_inner()).last_seq();
        self.catch_up_graph().await?;
        let now = self.graph.read().unwrap_or_else(|e| e.into_inner()).last_seq();
        took.events = usize::try_from(now - before).unwrap_or(0);

        if (marks.segment_members, marks.last_segment) != (seen.segment_members, seen.last_segment)
            && let Some(version) = self.store.latest_segment_version().await?
        {
            for segment in self.store.segments(version).await? {
                let members = self.store.segment_members(segment.id).await?;
                self.graph.write().unwrap_or_else(|e| e.into_inner()).upsert_segment(
                    segment.id,
                    &segment.description,
                    &members,
                );
            }
            took.segments = true;
        }

        if marks.last_rule != seen.last_rule
            && let Some(version) = self.store.latest_rules_version().await?
        {
            let rules = self.store.rules(version).await?;
            self.graph.write().unwrap_or_else(|e| e.into_inner()).set_rules(&rules);
            // The storefront's "bought together" reads the rules from the recommender.
            self.reload_tools().await?;
            took.rules = true;
        }

        if marks.products < seen.products
            || marks.users < seen.users
            || marks.interests < seen.interests
        {
            // Deletions leave no rows to follow; the graph drops them when it is rebuilt
            // (at this replica's next start). Lists never show a deleted product: they
            // read products from the store.
            tracing::info!("products, users or interests were deleted by another replica");
        }
        *seen = marks;
        Ok(took)
    }
}

/// Starts the follower and the job scheduler, as the configuration asks.
pub(crate) fn spawn(state: &Arc<AppState>) {
    let every = state.config.follow_ms;
    if every > 0 {
        let state = Arc::clone(state);
        tokio::spawn(async move {
            let Some(platform) = state.loaded() else { return };
            let start = match state.take_marks() {
                Some(marks) => Ok(marks),
                None => platform.store.sync_marks().await,
            };
            let mut seen = match start {
                Ok(marks) => marks,
                Err(e) => {
                    tracing::warn!("following the store: {e}; starting from nothing");
                    SyncMarks::default()
                }
            };
            let mut tick = tokio::time::interval(Duration::from_millis(every));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match platform.follow(&mut seen).await {
                    Ok(took) if took.any() => tracing::debug!(?took, "followed the store"),
                    Ok(_) => {}
                    // The database restarting, say: the next tick tries again from the
                    // same marks, so nothing is skipped.
                    Err(e) => tracing::warn!("following the store: {e}"),
                }
            }
        });
    }
    let jobs = &state.config.jobs;
    for (job, secs) in
        [(Job::Segments, jobs.segments_every_secs), (Job::Rules, jobs.rules_every_secs)]
    {
        if secs == 0 {
            continue;
        }
        let state = Arc::clone(state);
        tokio::spawn(async move {
            let Some(platform) = state.loaded() else { return };
            let holder = state.replica_name();
            let period_ms = (secs * 1000) as i64;
            loop {
                let slot = shopgraph_core::now_ms() / period_ms;
                match platform.store.claim_job(job.name(), slot, &holder).await {
                    Ok(true) => {
                        tracing::info!(job = job.name(), slot, "running the job for every replica");
                        let outcome = match job.run(&platform).await {
                            Ok(what) => format!("ok: {what}"),
                            Err(e) => {
                                tracing::warn!(job = job.name(), "the job failed: {e}");
                                format!("failed: {e}")
                            }
                        };
                        if let Err(e) = platform.store.finish_job(job.name(), slot, &outcome).await
                        {
                            tracing::warn!(job = job.name(), "recording the run: {e}");
                        }
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(job = job.name(), "claiming the run: {e}"),
                }
                // Until the next slot begins.
                let next = (slot + 1) * period_ms - shopgraph_core::now_ms();
                tokio::time::sleep(Duration::from_millis(next.clamp(10, period_ms) as u64)).await;
            }
        });
    }
}

/// The jobs the scheduler knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    Segments,
    Rules,
}

impl Job {
    pub fn name(self) -> &'static str {
        match self {
            Job::Segments => "segments",
            Job::Rules => "rules",
        }
    }

    /// Runs the job with its default settings (those of the POST endpoints) and says
    /// what it stored.
    async fn run(self, p: &Arc<Platform>) -> Result<String, Failure> {
        // The same read of the store that agents' analyses share, kept while nothing
        // changes.
        let s = p.insight.get(&p.store).await?;
        match self {
            Job::Segments => {
                let shopping = Arc::clone(&s);
                let run = tokio::task::spawn_blocking(move || {
                    shopping::segment(&shopping, &SegmentParams::default(), 200)
                })
                .await
                .map_err(|e| Failure::Input(e.to_string()))??;
                let (version, members) = save_segments(&p.store, Some(&p.graph), &s, &run).await?;
                Ok(format!("segments version {version}, {members} memberships"))
            }
            Job::Rules => {
                let params =
                    RuleParams { min_confidence: 0.3, min_lift: 1.5, ..RuleParams::default() };
                let shopping = Arc::clone(&s);
                let mined = tokio::task::spawn_blocking(move || mine(&shopping, 24.0, &params))
                    .await
                    .map_err(|e| Failure::Input(e.to_string()))??;
                let (version, stored) =
                    save_rules(&p.store, Some(&p.graph), &s, &mined, 10_000).await?;
                p.reload_tools().await?;
                Ok(format!("rules version {version}, {stored} rules"))
            }
        }
    }
}
