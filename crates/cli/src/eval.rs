//! `shopgraph eval`: every recommender on the evaluation protocols, one table.
//!
//! For each (data set, protocol): the split is made with a fixed seed and written to
//! `--splits-dir` (so that peers score the very same split); every model's
//! hyperparameters are chosen on the validation part by NDCG@10, then the model is
//! fitted on the whole training part and scored once on the test part. Peer rows are
//! read from `--peers` (written by `scripts/bench-recommend.sh`) when present.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use shopgraph_recommend::eval::{Row, evaluate, score_lists};
use shopgraph_recommend::model::{
    Als, AlsParams, Bpr, BprParams, ItemKnn, ItemKnnParams, Popularity, PopularityParams,
};
use shopgraph_recommend::split::{Protocol, read_rankings};
use shopgraph_recommend::{Interactions, Recommender, Split};

#[derive(Args)]
pub(crate) struct EvalArgs {
    /// Where the data sets are (`scripts/setup.sh` puts them there).
    #[arg(long, env = "SHOPGRAPH_DATA_DIR", default_value = crate::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Data sets to evaluate: ml-100k, ml-1m, bookcrossing (all three by default).
    #[arg(long = "dataset", value_parser = ["ml-100k", "ml-1m", "bookcrossing"])]
    datasets: Vec<String>,
    /// The splits are written here, one folder per (data set, protocol).
    #[arg(long, default_value = ".cache/splits")]
    splits_dir: PathBuf,
    /// Peer rankings: `<splits-dir>/<split>/peers/<name>.tsv` files are read from here
    /// when this is set (the bench script sets it).
    #[arg(long)]
    peers: bool,
    /// Only write the splits (for the peers to train on) and print their folders.
    #[arg(long, conflicts_with = "peers")]
    splits_only: bool,
}

/// The evaluation cases: data set, protocol, and the folder name of its split.
fn cases(datasets: &[String]) -> Vec<(&'static str, Protocol, &'static str)> {
    let all = [
        ("ml-100k", Protocol::Random { test_share: 0.25, seed: 2026 }, "ml-100k-random"),
        ("ml-100k", Protocol::LeaveLastOut, "ml-100k-last"),
        ("ml-1m", Protocol::LeaveLastOut, "ml-1m-last"),
        ("bookcrossing", Protocol::Random { test_share: 0.25, seed: 2026 }, "bookcrossing-random"),
    ];
    all.into_iter()
        .filter(|(name, _, _)| datasets.is_empty() || datasets.iter().any(|d| d == name))
        .collect()
}

pub(crate) fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let mut out = String::new();
    for (name, protocol, folder) in cases(&args.datasets) {
        let data = load(name, &args.data_dir)?;
        let split = Split::new(&data, protocol);
        let dir = args.splits_dir.join(folder);
        split.write(&dir).with_context(|| format!("writing the split to {}", dir.display()))?;
        tracing::info!(
            "{name}, {}: {} users, {} items, {} train / {} test; split in {}",
            protocol.describe(),
            data.n_users(),
            data.n_items(),
            split.train.len(),
            split.test.len(),
            dir.display()
        );
        if args.splits_only {
            out.push_str(&format!("{}\n", dir.display()));
            continue;
        }
        let mut rows = ours(&split);
        if args.peers {
            rows.extend(peers(&dir, &split)?);
        }
        out.push_str(&table(name, &protocol, &data, &rows));
    }
    crate::report(out.trim_end());
    Ok(())
}

/// A data set as interactions: every rating counts as an interaction; Book-Crossing
/// keeps its explicit ratings (1–10) and is cut to its 5-core.
fn load(name: &str, data_dir: &Path) -> anyhow::Result<Interactions> {
    let dir = data_dir.join(name);
    let data = match name {
        "bookcrossing" => {
            let (dataset, _) = shopgraph_import::bookcrossing::read(&dir)
                .with_context(|| format!("reading {}", dir.display()))?;
            Interactions::from_dataset(&dataset, true).k_core(5)
        }
        _ => {
            let (dataset, _) = shopgraph_import::recbole::read(&dir)
                .with_context(|| format!("reading {}", dir.display()))?;
            Interactions::from_dataset(&dataset, true)
        }
    };
    anyhow::ensure!(!data.is_empty(), "{name}: no interactions in {}", dir.display());
    Ok(data)
}

/// Chooses among `grid` on the validation part by NDCG@10, refits the best on the
/// training part, and scores it on the test part.
fn tuned<P: Copy + std::fmt::Debug>(
    split: &Split,
    grid: &[P],
    fit: impl Fn(&Interactions, P) -> Box<dyn Recommender>,
) -> Row {
    let mut best: Option<(f64, P)> = None;
    for &params in grid {
        let model = fit(&split.fit, params);
        let ndcg = evaluate(model.as_ref(), &split.fit, &split.valid).ndcg10;
        tracing::debug!("{} on validation: NDCG@10 {ndcg:.4}", model.name());
        if best.is_none_or(|(b, _)| ndcg > b) {
            best = Some((ndcg, params));
        }
    }
    let (_, params) = best.expect("a grid has at least one point");
    let started = Instant::now();
    let model = fit(&split.train, params);
    let fit_time = started.elapsed();
    let mut row = evaluate(model.as_ref(), &split.train, &split.test);
    row.fit = fit_time;
    row
}

fn ours(split: &Split) -> Vec<Row> {
    let popularity: Vec<PopularityParams> = [None, Some(30.0), Some(365.0)]
        .into_iter()
        .map(|half_life_days| PopularityParams { half_life_days })
        .collect();
    let knn: Vec<ItemKnnParams> = [(50, 0.0), (100, 10.0), (200, 10.0), (400, 50.0)]
        .into_iter()
        .map(|(neighbours, shrink)| ItemKnnParams { neighbours, shrink })
        .collect();
    let mut als = Vec::new();
    for factors in [64, 128] {
        for regularization in [0.01, 1.0] {
            for alpha in [1.0, 10.0] {
                als.push(AlsParams { factors, regularization, alpha, ..AlsParams::default() });
            }
        }
    }
    let mut bpr = Vec::new();
    for factors in [64, 128] {
        for regularization in [0.0001, 0.001] {
            bpr.push(BprParams { factors, regularization, ..BprParams::default() });
        }
    }
    vec![
        tuned(split, &popularity, |d, p| Box::new(Popularity::fit(d, p))),
        tuned(split, &knn, |d, p| Box::new(ItemKnn::fit(d, p))),
        tuned(split, &als, |d, p| Box::new(Als::fit(d, p))),
        tuned(split, &bpr, |d, p| Box::new(Bpr::fit(d, p))),
    ]
}

/// The peers' rankings of the test users, one `<name>.tsv` each in `<dir>/peers/`,
/// with `<name>.fit` holding their fit seconds.
fn peers(dir: &Path, split: &Split) -> anyhow::Result<Vec<Row>> {
    let peers = dir.join("peers");
    let mut rows = Vec::new();
    let Ok(entries) = std::fs::read_dir(&peers) else { return Ok(rows) };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tsv"))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let lists = read_rankings(&file, &split.train)?;
        let mut row = score_lists(&format!("peer: {name}"), &lists, &split.train, &split.test);
        if let Ok(secs) = std::fs::read_to_string(file.with_extension("fit")) {
            row.fit = std::time::Duration::from_secs_f64(secs.trim().parse().unwrap_or(0.0));
        }
        rows.push(row);
    }
    Ok(rows)
}

fn table(name: &str, protocol: &Protocol, data: &Interactions, rows: &[Row]) -> String {
    let mut out = format!(
        "\n{name}, {} — {} users, {} items, {} interactions; full ranking, training items removed\n",
        protocol.describe(),
        data.n_users(),
        data.n_items(),
        data.len()
    );
    out.push_str(&format!(
        "  {:<44} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>8}\n",
        "model",
        "Recall10",
        "Recall20",
        "NDCG10",
        "NDCG20",
        "HR10",
        "AUC",
        "cov10",
        "RMSE",
        "fit s"
    ));
    let value = |v: f64| if v.is_nan() { "—".to_owned() } else { format!("{v:.4}") };
    for r in rows {
        out.push_str(&format!(
            "  {:<44} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>8.2}\n",
            r.model,
            value(r.recall10),
            value(r.recall20),
            value(r.ndcg10),
            value(r.ndcg20),
            value(r.hr10),
            value(r.auc),
            value(r.coverage10),
            r.rmse.map_or("—".to_owned(), value),
            r.fit.as_secs_f64()
        ));
    }
    out
}
