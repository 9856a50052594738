//! `shopgraph eval`: every recommender on the evaluation protocols, one table.
//!
//! For each (data set, protocol): the split is made with a fixed seed and written to
//! `--splits-dir` (so that peers score the very same split); every model's
//! hyperparameters are chosen on the validation part by NDCG@10, then the model is
//! fitted on the whole training part and scored once on the test part. Peer rows are
//! read from `--peers` (written by `scripts/bench-recommend.sh`) when present.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use shopgraph_embed::Encoder;
use shopgraph_recommend::eval::{Row, evaluate, score_lists};
use shopgraph_recommend::model::{
    Als, AlsParams, Bpr, BprParams, Content, ContentParams, Ease, EaseParams, Fusion, FusionParams,
    Graph, GraphParams, ItemFeatures, ItemKnn, ItemKnnParams, Objective, Popularity,
    PopularityParams, Ranker, RankerParams, RankerWeights, RatingMf, RatingParams,
};
use shopgraph_recommend::side::ItemSide;
use shopgraph_recommend::split::{Protocol, read_rankings};
use shopgraph_recommend::{Interactions, Recommender, Split};

/// The models `--models` can pick, in table order.
const MODELS: [&str; 10] =
    ["pop", "knn", "ease", "als", "bpr", "content", "graph", "sequence", "fusion", "rating"];

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
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
    /// Only these of our models (all by default).
    #[arg(long, value_delimiter = ',', value_parser = MODELS)]
    models: Vec<String>,
    /// The most epochs the sequence and fusion models train (a quick run's cap; the
    /// validation split still chooses among them).
    #[arg(long, default_value_t = 200)]
    max_epochs: usize,
    /// The all-MiniLM-L6-v2 directory fetched by `scripts/setup.sh`, for the item texts.
    #[arg(long, env = "SHOPGRAPH_MODEL_DIR", default_value = ".cache/models/all-MiniLM-L6-v2")]
    model_dir: PathBuf,
    #[command(subcommand)]
    pub(crate) what: Option<EvalWhat>,
}

/// Evaluations other than the recommenders'.
#[derive(clap::Subcommand)]
pub(crate) enum EvalWhat {
    /// The shop assistant on the labelled turns of `tests/chat/eval.jsonl`.
    Chat(crate::chat::ChatEvalArgs),
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
        let (data, side) = load(name, &args.data_dir)?;
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
        let wanted = |m: &str| args.models.is_empty() || args.models.iter().any(|w| w == m);
        let features = if ["content", "fusion"].iter().any(|m| wanted(m)) {
            let vectors = item_vectors(&side, &args.model_dir, &dir)?;
            ItemFeatures { text: Some((Arc::new(vectors), 384)), side: Some(side.clone()) }
        } else {
            ItemFeatures { text: None, side: Some(side.clone()) }
        };
        let mut rows = ours(name, &split, &features, &wanted, args.max_epochs)?;
        if args.peers {
            rows.extend(peers(&dir, &split)?);
        }
        // Each table as soon as it is done: the whole run takes an hour or more.
        crate::report(table(name, &protocol, &data, &rows).trim_end());
    }
    if !out.is_empty() {
        crate::report(out.trim_end());
    }
    Ok(())
}

/// A data set as interactions and its items' side information: every rating counts as
/// an interaction; Book-Crossing keeps its explicit ratings (1–10) and is cut to its
/// 5-core.
pub(crate) fn load(name: &str, data_dir: &Path) -> anyhow::Result<(Interactions, Arc<ItemSide>)> {
    let dir = data_dir.join(name);
    let (dataset, _) = match name {
        "bookcrossing" => shopgraph_import::bookcrossing::read(&dir),
        _ => shopgraph_import::recbole::read(&dir),
    }
    .with_context(|| format!("reading {}", dir.display()))?;
    let mut data = Interactions::from_dataset(&dataset, true);
    if name == "bookcrossing" {
        data = data.k_core(5);
    }
    anyhow::ensure!(!data.is_empty(), "{name}: no interactions in {}", dir.display());
    let side = Arc::new(ItemSide::from_dataset(&dataset, data.ids()));
    Ok((data, side))
}

/// The items' BERT vectors, cached beside the split as `item-vectors.f32` (raw
/// little-endian floats) under the hash of the texts they encode.
pub(crate) fn item_vectors(
    side: &ItemSide,
    model_dir: &Path,
    dir: &Path,
) -> anyhow::Result<Vec<f32>> {
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&side.texts, &mut hasher);
    let key = format!("{:016x}", std::hash::Hasher::finish(&hasher));
    let file = dir.join("item-vectors.f32");
    let key_file = dir.join("item-vectors.key");
    if std::fs::read_to_string(&key_file).is_ok_and(|k| k == key)
        && let Ok(bytes) = std::fs::read(&file)
        && bytes.len() == side.n_items() * 384 * 4
    {
        return Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect());
    }
    let encoder = Encoder::load(model_dir)
        .with_context(|| format!("loading the encoder from {}", model_dir.display()))?;
    anyhow::ensure!(
        encoder.dim() == 384,
        "the encoder gives {} dimensions, not 384",
        encoder.dim()
    );
    let started = Instant::now();
    let texts: Vec<&str> = side.texts.iter().map(String::as_str).collect();
    let vectors = encoder.encode_all(&texts, 32, |_| {})?;
    tracing::info!(
        "encoded {} item texts in {:.1} s",
        texts.len(),
        started.elapsed().as_secs_f64()
    );
    let bytes: Vec<u8> = vectors.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))?;
    std::fs::write(&key_file, key).with_context(|| format!("writing {}", key_file.display()))?;
    Ok(vectors)
}

/// A tuned model: its row, and its chosen setting fitted on the fitting part (what the
/// ranker learns from) and on the training part (what ranks the test).
struct Tuned {
    row: Row,
    on_fit: Box<dyn Recommender>,
    on_train: Box<dyn Recommender>,
}

/// Chooses among `grid` on the validation part by NDCG@10, refits the best on the
/// training part, and scores it on the test part.
fn tuned<P: Copy + std::fmt::Debug>(
    split: &Split,
    grid: &[P],
    fit: impl Fn(&Interactions, P) -> Box<dyn Recommender>,
) -> Tuned {
    let mut best: Option<(f64, P, Box<dyn Recommender>)> = None;
    for &params in grid {
        let model = fit(&split.fit, params);
        let ndcg = evaluate(model.as_ref(), &split.fit, &split.valid).ndcg10;
        tracing::debug!("{} on validation: NDCG@10 {ndcg:.4}", model.name());
        if best.as_ref().is_none_or(|(b, _, _)| ndcg > *b) {
            best = Some((ndcg, params, model));
        }
    }
    let (_, params, on_fit) = best.expect("a grid has at least one point");
    let started = Instant::now();
    let on_train = fit(&split.train, params);
    let fit_time = started.elapsed();
    let mut row = evaluate(on_train.as_ref(), &split.train, &split.test);
    row.fit = fit_time;
    Tuned { row, on_fit, on_train }
}

fn ours(
    name: &str,
    split: &Split,
    features: &ItemFeatures,
    wanted: &dyn Fn(&str) -> bool,
    max_epochs: usize,
) -> anyhow::Result<Vec<Row>> {
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
    let half_lives: Vec<Option<f64>> = vec![None, Some(5.0), Some(20.0)];
    // (short name, tuned model): the ones the ranker reads carry their name.
    let mut models: Vec<(&str, Tuned)> = Vec::new();
    if wanted("pop") {
        models.push(("pop", tuned(split, &popularity, |d, p| Box::new(Popularity::fit(d, p)))));
    }
    if wanted("knn") {
        models.push(("knn", tuned(split, &knn, |d, p| Box::new(ItemKnn::fit(d, p)))));
    }
    if wanted("ease") && split.train.n_items() <= EASE_MAX_ITEMS {
        let grid: Vec<EaseParams> = [100.0, 300.0, 1000.0, 3000.0]
            .into_iter()
            .map(|lambda| EaseParams { lambda })
            .collect();
        models.push(("ease", tuned(split, &grid, |d, p| Box::new(Ease::fit(d, p)))));
    }
    if wanted("als") {
        models.push(("als", tuned(split, &als, |d, p| Box::new(Als::fit(d, p)))));
    }
    if wanted("bpr") {
        models.push(("bpr", tuned(split, &bpr, |d, p| Box::new(Bpr::fit(d, p)))));
    }
    if wanted("content")
        && let Some((vectors, dim)) = &features.text
    {
        let grid: Vec<ContentParams> =
            half_lives.iter().map(|&half_life| ContentParams { half_life }).collect();
        let fit = |d: &Interactions, p| -> Box<dyn Recommender> {
            Box::new(Content::fit(d, vectors.clone(), *dim, p))
        };
        models.push(("content", tuned(split, &grid, fit)));
    }
    if wanted("graph")
        && let Some(side) = &features.side
    {
        let grid: Vec<GraphParams> =
            half_lives.iter().map(|&half_life| GraphParams { half_life }).collect();
        models
            .push(("graph", tuned(split, &grid, |d, p| Box::new(Graph::fit(d, side.clone(), p)))));
    }
    // The objective follows the protocol: random events held out, or the next one.
    // (Both were tried on MovieLens-100K's random split: SASRec's validation NDCG@10
    // was 0.151 predicting the next event and 0.222 predicting held-out ones.)
    let objectives: &[Objective] = match split.protocol {
        Protocol::Random { .. } => &[Objective::HeldOut],
        Protocol::LeaveLastOut => &[Objective::Next],
    };
    for (model, base) in
        [("sequence", FusionParams::sequence()), ("profile", FusionParams::default())]
    {
        if wanted(if model == "profile" { "fusion" } else { model }) {
            let grid: Vec<FusionParams> = objectives
                .iter()
                .map(|&objective| {
                    let params = sequence_params(name, split, base);
                    let epochs = params.epochs.min(max_epochs.max(1));
                    let validate_every = params.validate_every.min(epochs);
                    FusionParams { objective, epochs, validate_every, ..params }
                })
                .collect();
            models.push((model, sequential(split, features, &grid)?));
        }
    }
    let mut rows: Vec<Row> = models.iter().map(|(_, t)| t.row.clone()).collect();
    if wanted("fusion") {
        rows.push(ranked(split, &models)?);
    }
    let explicit = split.train.rows().iter().any(|r| r.rating != split.train.rows()[0].rating);
    if wanted("rating") && explicit {
        rows.push(rating_model(split));
    }
    Ok(rows)
}

/// The rating model, tuned by RMSE on the validation part.
fn rating_model(split: &Split) -> Row {
    let mut best: Option<(f64, RatingParams)> = None;
    for factors in [50, 100] {
        for regularization in [0.02, 0.05] {
            let params = RatingParams { factors, regularization, ..RatingParams::default() };
            let model = RatingMf::fit(&split.fit, params);
            let (_, rmse) = shopgraph_recommend::metrics::mse(
                split.valid.rows().iter().map(|r| (model.predict(r.user, r.item), r.rating)),
            );
            tracing::debug!("{} on validation: RMSE {rmse:.4}", model.name());
            if best.is_none_or(|(b, _)| rmse < b) {
                best = Some((rmse, params));
            }
        }
    }
    let (_, params) = best.expect("a grid");
    let started = Instant::now();
    let model = RatingMf::fit(&split.train, params);
    let fit_time = started.elapsed();
    let mut row = evaluate(&model, &split.train, &split.test);
    row.fit = fit_time;
    row
}

/// The generators the ranker reads, where they were evaluated.
const RANKED: [&str; 6] = ["profile", "ease", "knn", "als", "graph", "content"];

/// The learned ranker over the tuned generators: learned on the validation part from
/// the generators fitted on the fitting part, then run over the ones fitted on the
/// training part. Its fit time is the generators' plus its own.
fn ranked(split: &Split, models: &[(&str, Tuned)]) -> anyhow::Result<Row> {
    let chosen: Vec<&Tuned> =
        RANKED.iter().filter_map(|k| models.iter().find(|(m, _)| m == k).map(|(_, t)| t)).collect();
    anyhow::ensure!(!chosen.is_empty(), "the ranker needs at least one generator");
    let on_fit: Vec<&dyn Recommender> = chosen.iter().map(|t| t.on_fit.as_ref()).collect();
    let started = Instant::now();
    let weights = RankerWeights::learn(&on_fit, &split.fit, &split.valid, RankerParams::default())?;
    let learn_time = started.elapsed();
    tracing::info!("ranker's linear weights: {:?}", weights.linear_weights());
    let on_train: Vec<&dyn Recommender> = chosen.iter().map(|t| t.on_train.as_ref()).collect();
    let ranker = Ranker::over(weights, on_train, &split.train);
    let mut row = evaluate(&ranker, &split.train, &split.test);
    row.fit = learn_time + chosen.iter().map(|t| t.row.fit).sum::<std::time::Duration>();
    Ok(row)
}

/// EASE holds an items × items matrix: 20,000 items are 1.6 GB.
const EASE_MAX_ITEMS: usize = 20_000;

/// The sequence and fusion models' settings per data set: 512 sampled negatives (or
/// every item, if fewer); shorter profiles and more dropout on Book-Crossing's short,
/// sparse histories.
fn sequence_params(name: &str, split: &Split, base: FusionParams) -> FusionParams {
    let negatives = split.train.n_items().min(512);
    // Validate every third epoch, stop after two validations without a better NDCG@10.
    let base = FusionParams { validate_every: 3, patience: 2, epochs: 60, ..base };
    match name {
        "bookcrossing" => FusionParams { max_len: 50, dropout: 0.5, negatives, batch: 64, ..base },
        // Its users average 165 ratings: profiles of the last 50 keep an epoch short.
        "ml-1m" => FusionParams { max_len: 50, negatives: 256, learning_rate: 2e-3, ..base },
        // 943 users: small batches, or an epoch is eight steps.
        _ => FusionParams { max_len: 200, negatives, batch: 32, learning_rate: 2e-3, ..base },
    }
}

/// Trains each setting on the fitting part with the epoch count chosen on validation,
/// keeps the best on validation, and scores the test with its weights and the training
/// part as the histories. The fit time is the kept setting's.
fn sequential(
    split: &Split,
    features: &ItemFeatures,
    grid: &[FusionParams],
) -> anyhow::Result<Tuned> {
    let mut best: Option<(f64, Fusion, std::time::Duration)> = None;
    for &params in grid {
        let started = Instant::now();
        let model = Fusion::fit(&split.fit, Some(&split.valid), features, params)?;
        let fit_time = started.elapsed();
        let ndcg = evaluate(&model, &split.fit, &split.valid).ndcg10;
        tracing::info!("{}: validation NDCG@10 {ndcg:.4}", model.name());
        if best.as_ref().is_none_or(|(b, _, _)| ndcg > *b) {
            best = Some((ndcg, model, fit_time));
        }
    }
    let (_, on_fit, fit_time) = best.context("an empty grid")?;
    let on_train = on_fit.with_histories(&split.train)?;
    let mut row = evaluate(&on_train, &split.train, &split.test);
    row.fit = fit_time;
    Ok(Tuned { row, on_fit: Box::new(on_fit), on_train: Box::new(on_train) })
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
    // Rating predictions for the test rows: `<name>.ratings`, `user item predicted`.
    let ratings = peers.join("cornac-MF.ratings");
    if ratings.is_file() {
        rows.push(peer_ratings(&ratings, split)?);
    }
    Ok(rows)
}

/// A peer's rating predictions scored for MSE/RMSE; a test row it did not predict
/// counts as an error (NaN), not as a pass.
fn peer_ratings(path: &Path, split: &Split) -> anyhow::Result<Row> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let ids = split.train.ids();
    let mut predicted = std::collections::HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [u, i, p] = fields[..] else {
            anyhow::bail!("{} line {}: expected user, item, rating", path.display(), n + 1);
        };
        let (Some(u), Some(i), Ok(p)) = (ids.user(u), ids.item(i), p.parse::<f32>()) else {
            anyhow::bail!(
                "{} line {}: unknown user or item, or not a number",
                path.display(),
                n + 1
            );
        };
        predicted.insert((u, i), p);
    }
    let pairs = split
        .test
        .rows()
        .iter()
        .map(|r| (predicted.get(&(r.user, r.item)).copied().unwrap_or(f32::NAN), r.rating));
    let (mse, rmse) = shopgraph_recommend::metrics::mse(pairs);
    let nan = f64::NAN;
    let mut row = Row {
        model: "peer: cornac-MF (ratings only)".into(),
        recall10: nan,
        recall20: nan,
        ndcg10: nan,
        ndcg20: nan,
        hr10: nan,
        auc: nan,
        coverage10: nan,
        rmse: Some(rmse),
        mse: Some(mse),
        ..Row::default()
    };
    if let Ok(secs) = std::fs::read_to_string(path.with_extension("fit")) {
        row.fit = std::time::Duration::from_secs_f64(secs.trim().parse().unwrap_or(0.0));
    }
    Ok(row)
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
        "  {:<72} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>8}\n",
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
            "  {:<72} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>8.2}\n",
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
