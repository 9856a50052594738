//! `shopgraph import`: read a source with `shopgraph-import`, then write it into the
//! store in batches, resolving external ids to store ids.
//!
//! Nothing is written when the source cannot be read or when too many of its rows are
//! malformed (a wrong file, not a few bad rows). Every write is an upsert keyed by sku,
//! external id or idempotency key, so running the same import twice stores it once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use shopgraph_core::event::NewEvent;
use shopgraph_core::{ProductId, UserId};
use shopgraph_import::report::SetAside;
use shopgraph_import::{Dataset, Report, bookcrossing, jsonl, recbole};
use shopgraph_store::Store;

use crate::{DEFAULT_DATA_DIR, DbArgs, report, source_dir};

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// `bookcrossing`, `ml-100k`, `ml-1m` (fetched by scripts/setup.sh), or a directory
    /// of shop files (`products.jsonl`, …), Book-Crossing CSVs or RecBole atomic files.
    source: String,
    #[command(flatten)]
    db: DbArgs,
    #[arg(long, env = "SHOPGRAPH_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Refuse the import, writing nothing, when more than this share of rows is
    /// malformed: that is a wrong or broken file, not a few bad rows.
    #[arg(long, default_value_t = 0.05)]
    max_malformed: f64,
}

/// What a load wrote.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) products: usize,
    pub(crate) users: usize,
    pub(crate) events_inserted: usize,
    pub(crate) events_already_stored: usize,
    pub(crate) triples_added: u64,
}

pub(crate) async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let dir = source_dir(&args.source, &args.data_dir);
    let started = Instant::now();
    let (mut data, mut summary) = read(&dir)?;
    data.vet(&mut summary);
    let read_secs = started.elapsed().as_secs_f64();
    check_malformed(&summary, args.max_malformed)?;
    let store = args.db.open().await?;
    let loaded = load(&store, data, &mut summary).await?;
    let secs = started.elapsed().as_secs_f64();
    report(&format!(
        "{summary}  written: {} products, {} users, {} new events ({} already stored), {} new kg triples\n  \
         {} rows in {secs:.1} s ({:.0} rows/s; reading and cleaning {read_secs:.1} s)",
        loaded.products,
        loaded.users,
        loaded.events_inserted,
        loaded.events_already_stored,
        loaded.triples_added,
        summary.total_read(),
        summary.total_read() as f64 / secs,
    ));
    Ok(())
}

/// Reads any supported source, telling the format by the files in the directory.
pub(crate) fn read(dir: &Path) -> anyhow::Result<(Dataset, Report)> {
    if !dir.is_dir() {
        bail!(
            "{}: no such directory (run scripts/setup.sh to fetch the public data sets)",
            dir.display()
        );
    }
    let spinner = ProgressBar::new_spinner().with_message(format!("reading {}", dir.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let result = if bookcrossing::looks_like(dir) {
        bookcrossing::read(dir)
    } else if recbole::looks_like(dir) {
        recbole::read(dir)
    } else {
        jsonl::read(dir)
    };
    spinner.finish_and_clear();
    Ok(result?)
}

pub(crate) fn check_malformed(report: &Report, max_share: f64) -> anyhow::Result<()> {
    let (malformed, read) = (report.total_malformed(), report.total_read());
    if read > 0 && malformed as f64 / read as f64 > max_share {
        bail!(
            "{report}refused: {malformed} of {read} rows are malformed ({:.1}%, the limit is {:.1}%); nothing was written",
            100.0 * malformed as f64 / read as f64,
            100.0 * max_share
        );
    }
    Ok(())
}

/// Writes a dataset into the store. Events naming a user or product found neither in
/// the dataset nor in the store are set aside in `report`.
pub(crate) async fn load(
    store: &Store,
    data: Dataset,
    report: &mut Report,
) -> anyhow::Result<Loaded> {
    const CHUNK: usize = 5_000;
    let mut loaded = Loaded::default();
    store.upsert_categories(&data.categories).await.context("writing categories")?;

    let bar =
        progress(data.products.len() + data.users.len() + data.events.len(), "catalog and users");
    let mut product_ids: HashMap<String, ProductId> = HashMap::with_capacity(data.products.len());
    for chunk in data.products.chunks(CHUNK) {
        let ids = store.upsert_products(chunk).await.context("writing products")?;
        product_ids.extend(chunk.iter().map(|p| p.sku.clone()).zip(ids));
        bar.inc(chunk.len() as u64);
    }
    loaded.products = product_ids.len();
    let mut user_ids: HashMap<String, UserId> = HashMap::with_capacity(data.users.len());
    for chunk in data.users.chunks(CHUNK) {
        let ids = store.upsert_users(chunk).await.context("writing users")?;
        user_ids.extend(chunk.iter().map(|u| u.external_id.clone()).zip(ids));
        bar.inc(chunk.len() as u64);
    }
    loaded.users = user_ids.len();

    // References to records imported earlier, not in this dataset: ask the store.
    let missing_users: Vec<&str> =
        unique_missing(data.events.iter().map(|e| e.user.as_str()), &user_ids);
    user_ids.extend(store.user_ids_by_external_id(&missing_users).await?);
    let missing_products: Vec<&str> =
        unique_missing(data.events.iter().filter_map(|e| e.product.as_deref()), &product_ids);
    product_ids.extend(store.product_ids_by_sku(&missing_products).await?);

    bar.set_message("events");
    let mut batch = Vec::with_capacity(CHUNK * 2);
    for record in &data.events {
        let user = user_ids.get(&record.user);
        let product = record.product.as_ref().map(|sku| product_ids.get(sku));
        let (Some(user), None | Some(Some(_))) = (user, product) else {
            let why = format!(
                "event {}: unknown user {:?} or product {:?}",
                record.key, record.user, record.product
            );
            report.set_aside(
                "events",
                SetAside::Orphaned,
                "events (checked against the store)",
                0,
                why,
            );
            report.counts("events").kept -= 1;
            continue;
        };
        batch.push(NewEvent {
            idempotency_key: record.key.clone(),
            user: *user,
            product: product.flatten().copied(),
            kind: record.kind,
            value: record.value,
            payload: record.payload.clone(),
            occurred_at: record.occurred_at,
        });
        if batch.len() == CHUNK * 2 {
            append(store, &mut batch, &mut loaded).await?;
            bar.inc(CHUNK as u64 * 2);
        }
    }
    let rest = batch.len() as u64;
    append(store, &mut batch, &mut loaded).await?;
    bar.inc(rest);

    let links: Vec<(ProductId, String)> = data
        .product_entities
        .iter()
        .filter_map(|(sku, entity)| Some((*product_ids.get(sku)?, entity.clone())))
        .collect();
    store.link_product_entities(&links).await.context("linking products to kg entities")?;
    bar.set_message("knowledge graph");
    for chunk in data.triples.chunks(CHUNK) {
        loaded.triples_added +=
            store.add_triples(chunk, "import").await.context("writing kg triples")?;
    }
    bar.finish_and_clear();
    Ok(loaded)
}

async fn append(
    store: &Store,
    batch: &mut Vec<NewEvent>,
    loaded: &mut Loaded,
) -> anyhow::Result<()> {
    let out = store.append_events(batch).await.context("writing events")?;
    loaded.events_inserted += out.inserted;
    loaded.events_already_stored += out.duplicates;
    batch.clear();
    Ok(())
}

fn unique_missing<'a, V>(
    keys: impl Iterator<Item = &'a str>,
    known: &HashMap<String, V>,
) -> Vec<&'a str> {
    let mut missing: Vec<&str> = keys.filter(|k| !known.contains_key(*k)).collect();
    missing.sort_unstable();
    missing.dedup();
    missing
}

pub(crate) fn progress(total: usize, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64).with_message(message);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>18} [{bar:40}] {human_pos}/{human_len} ({per_sec}, {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}
