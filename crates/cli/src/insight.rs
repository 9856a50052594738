//! `shopgraph insight …`: segments, rules, sequences, forecasts, audiences and
//! experiments over the store's data, as reports; `shopgraph bench insight` runs the
//! heavy ones over a whole public data set and times them.
//!
//! Both read their data into one [`Shopping`]: items with their graph concepts, and
//! each shopper's history in time order. The analyses themselves are in the insight
//! crate.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use clap::Subcommand;
use shopgraph_insight::experiments::{self, Experiment};
use shopgraph_insight::segments::SegmentParams;
use shopgraph_insight::sequences::{self, Transitions};
use shopgraph_insight::shopping::{self, Accuracy, SegmentRun, Shopping};
use shopgraph_insight::{RuleParams, Rules};
use shopgraph_server::insight::{self as api, AudienceRequest};

use crate::bench::peak_memory;
use crate::{DbArgs, report};

fn segments_text(s: &Shopping, run: &SegmentRun) -> String {
    let c = &run.clustering;
    let mut text = format!(
        "{} shoppers profiled over {} concepts ({} without a profile); k = {} chosen by silhouette {:.3} in {:.1} s\n",
        run.profiles.users.len(),
        run.profiles.dims.len(),
        s.shoppers.len() - run.profiles.users.len(),
        c.k(),
        c.silhouette,
        run.secs,
    );
    let tried: Vec<String> = c.tried.iter().map(|(k, v)| format!("k={k}: {v:.3}")).collect();
    let _ = writeln!(text, "silhouette by k: {}", tried.join(", "));
    let sizes = c.sizes();
    let _ = writeln!(
        text,
        "{:>7}  {:>8}  top concepts (above the average shopper)",
        "segment", "shoppers"
    );
    for (i, desc) in run.descriptions.iter().enumerate() {
        let _ = writeln!(text, "{i:>7}  {:>8}  {desc}", sizes[i]);
    }
    text
}

/// Mined rules over sessions, timed.
fn mine(s: &Shopping, session_hours: f64, params: &RuleParams) -> anyhow::Result<(Rules, f64)> {
    let started = Instant::now();
    let mined = api::mine(s, session_hours, params)?;
    Ok((mined, started.elapsed().as_secs_f64()))
}

fn rules_text(s: &Shopping, mined: &Rules, top: usize) -> String {
    let name =
        |items: &[u32]| items.iter().map(|&i| s.item_name(i)).collect::<Vec<_>>().join(" + ");
    let mut text = format!(
        "{} baskets: {} frequent itemsets, {} rules; the strongest:\n",
        mined.baskets,
        mined.itemsets.len(),
        mined.rules.len()
    );
    for r in mined.rules.iter().take(top) {
        let _ = writeln!(
            text,
            "  {} → {}  support {:.4}, confidence {:.2}, lift {:.1}",
            name(&r.antecedent),
            name(&r.consequent),
            r.support,
            r.confidence,
            r.lift
        );
    }
    text
}

/// Next-item and next-category transitions, with a hit-rate check of the item chain
/// (each session's last step held out) against popularity.
fn sequences_text(s: &Shopping, session_hours: f64, top: usize) -> anyhow::Result<String> {
    let sessions = s.sequences((session_hours * 3_600_000.0) as i64);
    let started = Instant::now();
    // Hold out each session's last step (of sessions with three or more).
    let mut held_out = Vec::new();
    let fit_on: Vec<Vec<u32>> = sessions
        .iter()
        .map(|h| {
            if h.len() >= 3 && h[h.len() - 2] != h[h.len() - 1] {
                held_out.push((h[h.len() - 2], h[h.len() - 1]));
                h[..h.len() - 1].to_vec()
            } else {
                h.clone()
            }
        })
        .collect();
    let fit = Transitions::count(&fit_on, 1)?;
    let mut visits = vec![0u32; s.skus.len()];
    for h in &fit_on {
        for &i in h {
            visits[i as usize] += 1;
        }
    }
    let mut popular: Vec<u32> = (0..s.skus.len() as u32).collect();
    popular.sort_by(|a, b| visits[*b as usize].cmp(&visits[*a as usize]).then(a.cmp(b)));
    popular.truncate(50);
    let (chain, pop, judged) = sequences::hit_rate(&fit, &held_out, &popular, 10);
    let items = Transitions::count(&sessions, 2)?;
    let categories =
        Transitions::count(&sequences::through(&sessions, |i| s.item_category[i as usize]), 2);
    let secs = started.elapsed().as_secs_f64();
    let mut text = format!(
        "{} sessions, {} steps; counted in {secs:.1} s\n\
         next item, each session's last step held out ({judged}): hit rate@10 {chain:.3} by the chain, {pop:.3} by popularity\n\
         what shoppers usually look at next:\n",
        sessions.len(),
        items.steps()
    );
    for (from, next) in items.strongest(top) {
        let _ = writeln!(
            text,
            "  {} → {}  {} times, {:.0}% of steps out",
            s.item_name(from),
            s.item_name(next.to),
            next.count,
            100.0 * next.probability
        );
    }
    if let Ok(categories) = categories {
        let _ = writeln!(text, "between categories:");
        for (from, next) in categories.strongest(top) {
            let _ = writeln!(
                text,
                "  {} → {}  {} times, {:.0}%",
                s.concept_names[from as usize],
                s.concept_names[next.to as usize],
                next.count,
                100.0 * next.probability
            );
        }
    }
    Ok(text)
}

fn accuracy_line(level: &str, a: &Accuracy) -> String {
    format!(
        "  {level:<10} {:>6} series ({} skipped)  MASE {:.3} (median {:.3})  seasonal-naive MASE {:.3}  forecast/naive error {:.3}  better on {:.0}%, worse on {:.0}%  (methods: {} seasonal, {} smoothing, {} median)\n",
        a.series,
        a.skipped,
        a.mase,
        a.median_mase,
        a.mase_naive,
        a.relative_mae,
        100.0 * a.better as f64 / a.series.max(1) as f64,
        100.0 * a.worse as f64 / a.series.max(1) as f64,
        a.methods[0],
        a.methods[1],
        a.methods[2],
    )
}

fn forecast_text(
    s: &Shopping,
    period: usize,
    horizon: usize,
    top: usize,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let shopping::Demand { first_week: first, items, by_category: cats, .. } = shopping::demand(s)?;
    let weeks = items.first().map_or(0, Vec::len);
    let product = shopping::accuracy(&items, period, horizon);
    let category = shopping::accuracy(&cats, period, horizon);
    let secs = started.elapsed().as_secs_f64();
    let mut text = format!(
        "weekly demand over {weeks} weeks from {}; season {period} weeks; the last {horizon} weeks held out; {secs:.1} s\n",
        shopping::date(shopgraph_insight::forecast::week_start(first)),
    );
    text.push_str(&accuracy_line("products", &product));
    text.push_str(&accuracy_line("categories", &category));
    // The next weeks for the items in most demand lately, with their stock cover.
    let recent = |y: &Vec<f64>| y.iter().rev().take(horizon).sum::<f64>();
    let mut busiest: Vec<usize> = (0..items.len()).collect();
    busiest.sort_by(|&a, &b| recent(&items[b]).total_cmp(&recent(&items[a])).then(a.cmp(&b)));
    let _ = writeln!(text, "the next 4 weeks for the products in most demand lately:");
    for &i in busiest.iter().take(top) {
        let Ok(model) = shopgraph_insight::forecast::fit(&items[i], period) else { continue };
        let f = model.forecast(4);
        let weekly = f.iter().sum::<f64>() / 4.0;
        let cover = if weekly > 0.0 {
            format!("{:.1} weeks of stock", s.stock[i] as f64 / weekly)
        } else {
            "no demand expected".into()
        };
        let _ = writeln!(
            text,
            "  {}: {}  ({cover})",
            s.titles[i],
            f.iter().map(|v| format!("{v:.1}")).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(text)
}

#[derive(Subcommand)]
pub(crate) enum InsightCommand {
    /// Cluster the shoppers' profile vectors; k chosen by silhouette. --save stores the
    /// run as a new segment version (the graph gets membership edges on its next build).
    Segments {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, default_value_t = 2)]
        k_min: usize,
        #[arg(long, default_value_t = 12)]
        k_max: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Concepts kept as profile dimensions (the most widespread).
        #[arg(long, default_value_t = 200)]
        dims: usize,
        #[arg(long)]
        save: bool,
    },
    /// Association rules over sessions.
    Rules {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        rules: RuleArgs,
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Store the strongest --keep rules as a new rule version: the graph's
        /// bought-together edges and the recommender's "frequently bought together".
        #[arg(long)]
        save: bool,
        #[arg(long, default_value_t = 10_000)]
        keep: usize,
    },
    /// What shoppers usually look at next.
    Sequences {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, default_value_t = 24.0)]
        session_hours: f64,
        #[arg(long, default_value_t = 15)]
        top: usize,
    },
    /// Weekly demand forecasts per product and category, backtested.
    Forecast {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        forecast: ForecastArgs,
        /// Also forecast this one: `sku:SKU` or `category:KEY`.
        #[arg(long)]
        of: Option<String>,
        /// Write its chart (demand and forecast) here as SVG.
        #[arg(long, requires = "of")]
        svg: Option<PathBuf>,
    },
    /// Shoppers for a campaign: every filter must hold; each shopper comes with why.
    Audience {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        filters: AudienceArgs,
        /// Write the whole audience here as CSV (shopper, reasons).
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Click-through and conversion per arm of an experiment.
    Experiment {
        #[command(flatten)]
        db: DbArgs,
        /// The experiment's name (the hash's salt).
        name: String,
        /// Arms as NAME=WEIGHT, the control first.
        #[arg(long, value_delimiter = ',', default_values = ["control=1", "treatment=1"])]
        arms: Vec<String>,
        /// A click or purchase counts for an impression this long after it.
        #[arg(long, default_value_t = 24.0)]
        window_hours: f64,
    },
}

#[derive(clap::Args, Clone)]
pub(crate) struct RuleArgs {
    /// A pause longer than this ends a session.
    #[arg(long, default_value_t = 24.0)]
    pub session_hours: f64,
    #[arg(long, default_value_t = 0.01)]
    pub min_support: f64,
    #[arg(long, default_value_t = 0.3)]
    pub min_confidence: f64,
    #[arg(long, default_value_t = 1.5)]
    pub min_lift: f64,
    #[arg(long, default_value_t = 3)]
    pub max_len: usize,
}

impl RuleArgs {
    fn params(&self) -> RuleParams {
        RuleParams {
            min_support: self.min_support,
            min_confidence: self.min_confidence,
            min_lift: self.min_lift,
            max_len: self.max_len,
        }
    }
}

#[derive(clap::Args, Clone)]
pub(crate) struct ForecastArgs {
    /// The season, in weeks.
    #[arg(long, default_value_t = 52)]
    pub period: usize,
    /// Weeks held out for the backtest.
    #[arg(long, default_value_t = 12)]
    pub horizon: usize,
    /// Products listed with their next weeks.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

#[derive(clap::Args, Clone)]
pub(crate) struct AudienceArgs {
    /// In this segment of the newest segment version.
    #[arg(long)]
    segment: Option<u32>,
    /// Interested in SUBJECT (`maker:stephen king`) with at least --min-weight.
    #[arg(long)]
    interest: Option<String>,
    #[arg(long)]
    min_weight: Option<f64>,
    /// Holds these skus (comma-separated) ...
    #[arg(long, value_delimiter = ',')]
    has: Option<Vec<String>>,
    /// ... and none of these (the other side of a rule).
    #[arg(long, value_delimiter = ',', requires = "has")]
    lacks: Option<Vec<String>>,
    /// Active in the last N days (before the newest event).
    #[arg(long)]
    active_days: Option<f64>,
    /// Likely to want SKU: a rule over sessions ending in it, of at least
    /// --min-propensity confidence, whose other side the shopper holds.
    #[arg(long)]
    propensity: Option<String>,
    #[arg(long)]
    min_propensity: Option<f64>,
}

impl AudienceArgs {
    fn request(&self) -> AudienceRequest {
        AudienceRequest {
            segment: self.segment,
            interest: self.interest.clone(),
            min_weight: self.min_weight,
            has: self.has.clone(),
            lacks: self.lacks.clone(),
            active_days: self.active_days,
            propensity_sku: self.propensity.clone(),
            min_propensity: self.min_propensity,
        }
    }
}

pub(crate) async fn run(command: InsightCommand) -> anyhow::Result<()> {
    match command {
        InsightCommand::Segments { db, k_min, k_max, seed, dims, save } => {
            let store = db.open().await?;
            let s = api::read_store(&store).await?;
            let params = SegmentParams { k_min, k_max, seed, ..SegmentParams::default() };
            let run = shopping::segment(&s, &params, dims)?;
            let mut text = segments_text(&s, &run);
            if save {
                let (version, n) = api::save_segments(&store, None, &s, &run).await?;
                let _ = writeln!(text, "stored as segment version {version}: {n} memberships");
            }
            report(&text);
        }
        InsightCommand::Rules { db, rules, top, save, keep } => {
            let store = db.open().await?;
            let s = api::read_store(&store).await?;
            let (mined, secs) = mine(&s, rules.session_hours, &rules.params())?;
            let mut text = format!("mined in {secs:.2} s\n{}", rules_text(&s, &mined, top));
            if save {
                let (version, n) = api::save_rules(&store, None, &s, &mined, keep).await?;
                let _ = writeln!(text, "stored {n} rules as rule version {version}");
            }
            report(&text);
        }
        InsightCommand::Sequences { db, session_hours, top } => {
            let s = api::read_store(&db.open().await?).await?;
            report(&sequences_text(&s, session_hours, top)?);
        }
        InsightCommand::Forecast { db, forecast, of, svg } => {
            let s = api::read_store(&db.open().await?).await?;
            let mut text = forecast_text(&s, forecast.period, forecast.horizon, forecast.top)?;
            if let Some(of) = of {
                let f = api::forecast_of(&s, &of, 8)?;
                let _ = writeln!(
                    text,
                    "{of} ({}): the next 8 weeks {}; backtest MASE {} (seasonal-naive {})",
                    f.name,
                    f.forecast.iter().map(|v| format!("{v:.1}")).collect::<Vec<_>>().join(", "),
                    f.mase.map_or("—".into(), |m| format!("{m:.3}")),
                    f.mase_naive.map_or("—".into(), |m| format!("{m:.3}")),
                );
                if let Some(path) = svg {
                    std::fs::write(&path, api::chart_svg(&f))
                        .with_context(|| format!("writing {}", path.display()))?;
                    let _ = writeln!(text, "chart written to {}", path.display());
                }
            }
            report(&text);
        }
        InsightCommand::Audience { db, filters, csv } => {
            let store = db.open().await?;
            let s = api::read_store(&store).await?;
            let members = api::audience(&store, &s, &filters.request()).await?;
            let mut text =
                format!("audience: {} of {} shoppers\n", members.len(), s.shoppers.len());
            for m in members.iter().take(10) {
                let _ = writeln!(text, "  {}: {}", m.shopper, m.reasons.join("; "));
            }
            if members.len() > 10 {
                let _ = writeln!(text, "  … and {} more", members.len() - 10);
            }
            if let Some(path) = csv {
                std::fs::write(&path, api::audience_csv(&members))
                    .with_context(|| format!("writing {}", path.display()))?;
                let _ = writeln!(text, "written to {}", path.display());
            }
            report(&text);
        }
        InsightCommand::Experiment { db, name, arms, window_hours } => {
            let store = db.open().await?;
            let s = api::read_store(&store).await?;
            let experiment = Experiment::new(&name, api::arms(&arms)?)?;
            let result = api::experiment(&store, &s, &experiment, window_hours).await?;
            report(&experiment_text(&result, &name, window_hours));
        }
    }
    Ok(())
}

fn experiment_text(
    (all, by_segment): &(Vec<experiments::ArmReport>, Vec<(String, Vec<experiments::ArmReport>)>),
    name: &str,
    window_hours: f64,
) -> String {
    let mut text = format!(
        "experiment {name}: clicks and purchases within {window_hours} h of an impression\n"
    );
    let table = |text: &mut String, rows: &[experiments::ArmReport]| {
        let _ = writeln!(
            text,
            "  {:<12} {:>8} {:>11} {:>26} {:>26} {:>28}",
            "arm",
            "shoppers",
            "impressions",
            "click-through (95% CI)",
            "conversion (95% CI)",
            "CTR vs control (95% CI)"
        );
        let ci = |i: experiments::Interval| {
            format!("{:.2}% [{:.2}, {:.2}]", 100.0 * i.rate, 100.0 * i.low, 100.0 * i.high)
        };
        for r in rows {
            let _ = writeln!(
                text,
                "  {:<12} {:>8} {:>11} {:>26} {:>26} {:>28}",
                r.arm,
                r.shoppers,
                r.outcome.shown,
                ci(r.ctr),
                ci(r.conversion),
                r.ctr_lift.map_or("—".into(), ci)
            );
        }
    };
    table(&mut text, all);
    for (segment, rows) in by_segment {
        let _ = writeln!(text, "segment {segment}:");
        table(&mut text, rows);
    }
    text
}

/// `shopgraph bench insight`: segments, rules, sequences and forecasts over a whole
/// data set, each timed, with peak memory.
pub(crate) fn bench(
    dir: &Path,
    segment_params: &SegmentParams,
    dims: usize,
    rules: &RuleArgs,
    forecast: &ForecastArgs,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (data, _) = crate::load::read(dir)?;
    let s = Shopping::from_dataset(&data);
    drop(data);
    let mut text = format!(
        "insight over {}: {} products, {} shoppers, {} events; read in {:.1} s\n\n",
        dir.display(),
        s.skus.len(),
        s.shoppers.len(),
        s.history.iter().map(Vec::len).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    let run = shopping::segment(&s, segment_params, dims)?;
    let _ = writeln!(
        text,
        "SEGMENTS\n{}peak memory so far {}\n",
        segments_text(&s, &run),
        peak_memory().unwrap_or_default()
    );
    let (mined, secs) = mine(&s, rules.session_hours, &rules.params())?;
    let _ = writeln!(
        text,
        "RULES (support ≥ {}, confidence ≥ {}, lift ≥ {}, ≤ {} items) mined in {secs:.1} s\n{}peak memory so far {}\n",
        rules.min_support,
        rules.min_confidence,
        rules.min_lift,
        rules.max_len,
        rules_text(&s, &mined, 5),
        peak_memory().unwrap_or_default()
    );
    drop(mined);
    match sequences_text(&s, rules.session_hours, 5) {
        Ok(q) => {
            let _ = writeln!(text, "SEQUENCES\n{q}");
        }
        Err(e) => {
            let _ = writeln!(text, "SEQUENCES: {e}\n");
        }
    }
    match forecast_text(&s, forecast.period, forecast.horizon, forecast.top) {
        Ok(f) => {
            let _ = writeln!(text, "FORECAST\n{f}");
        }
        Err(e) => {
            let _ = writeln!(text, "FORECAST: {e}");
        }
    }
    let _ = writeln!(text, "peak memory {}", peak_memory().unwrap_or_default());
    report(&text);
    Ok(())
}
