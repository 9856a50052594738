//! Interest exploration for marketing and operations (`/api/v1/insight`): segments,
//! association rules, what shoppers look at next, campaign audiences (JSON or CSV),
//! demand forecasts (JSON or an SVG chart) and experiment reports. Reading is for agent
//! keys, except what a storefront may show or use per shopper (next steps, a shopper's
//! segment), which any key may read; recomputing segments and rules, which replaces
//! what the recommender and the graph use, is for admin keys.
//!
//! The analyses are the insight crate's; this module reads the store into its shape
//! ([`read_store`]), keeps that for as long as nothing changed, and stores results.
//! The command line (`shopgraph insight`) calls the same functions.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shopgraph_core::UserId;
use shopgraph_core::event::EventKind;
use shopgraph_core::interest::Polarity;
use shopgraph_core::segment::{NewSegment, ProductRule};
use shopgraph_graph::KnowledgeGraph;
use shopgraph_insight::audience::{self, Filter, Reason};
use shopgraph_insight::experiments::{self, Arm, ArmReport, Experiment, Touch};
use shopgraph_insight::forecast;
use shopgraph_insight::segments::SegmentParams;
use shopgraph_insight::sequences::Transitions;
use shopgraph_insight::shopping::{self, SegmentRun, Shopping, interaction};
use shopgraph_insight::{InsightError, Rule, RuleParams, Rules, rules};
use shopgraph_store::{Store, StoreError};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, Role};
use crate::error::{ApiError, Body, ErrorBody, Params, bounded};
use crate::{AppState, Platform};

/// Why an insight could not be given.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The caller's input: a threshold out of range, an unknown segment or sku, no
    /// data to analyse.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<InsightError> for Failure {
    fn from(e: InsightError) -> Failure {
        Failure::Input(e.to_string())
    }
}

impl From<shopgraph_assistant::AssistantError> for Failure {
    fn from(e: shopgraph_assistant::AssistantError) -> Failure {
        match e {
            shopgraph_assistant::AssistantError::Store(e) => Failure::Store(e),
            e => Failure::Input(e.to_string()),
        }
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> ApiError {
        match f {
            Failure::Input(why) => ApiError::bad_request(why),
            Failure::Store(e) => e.into(),
        }
    }
}

/// The store's catalog, shoppers, behaviour and stated interests, with the store's ids.
pub async fn read_store(store: &Store) -> Result<Shopping, Failure> {
    let exported = shopgraph_assistant::shop::export(store, |_| true).await?;
    let mut s = Shopping::from_dataset(&exported.dataset);
    let product_of: HashMap<&str, shopgraph_core::ProductId> =
        exported.sku_of.iter().map(|(id, sku)| (sku.as_str(), *id)).collect();
    for (i, sku) in s.skus.iter().enumerate() {
        s.product_ids[i] = product_of.get(sku.as_str()).copied();
    }
    let id_of: HashMap<&str, UserId> =
        exported.external.iter().map(|(id, ext)| (ext.as_str(), *id)).collect();
    for (u, ext) in s.shoppers.iter().enumerate() {
        s.shopper_ids[u] = id_of.get(ext.as_str()).copied();
    }
    let mut after = shopgraph_core::InterestId(0);
    loop {
        let page = store.interests_page(after, 5_000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for i in page {
            let Some(ext) = exported.external.get(&i.user) else { continue };
            let sign = if i.polarity == Polarity::Dislikes { -1.0 } else { 1.0 };
            s.add_interest(ext, Some(i.user), i.subject, sign * i.weight);
        }
    }
    Ok(s)
}

/// Stores a segmentation as the next version and, when given the graph, writes its
/// membership edges at once. Returns (version, memberships).
pub async fn save_segments(
    store: &Store,
    graph: Option<&std::sync::RwLock<KnowledgeGraph>>,
    s: &Shopping,
    run: &SegmentRun,
) -> Result<(i64, usize), Failure> {
    let c = &run.clustering;
    let mut members: Vec<Vec<(UserId, f64)>> = vec![Vec::new(); c.k()];
    for (p, &u) in run.profiles.users.iter().enumerate() {
        if let Some(id) = s.shopper_ids[u as usize] {
            // Closeness in (0, 1]: 1 at the centre.
            let score = 1.0 / (1.0 + f64::from(c.distances[p]));
            members[c.labels[p] as usize].push((id, score));
        }
    }
    let segments: Vec<NewSegment> = members
        .into_iter()
        .enumerate()
        .map(|(i, members)| NewSegment {
            key: i.to_string(),
            description: run.descriptions[i].clone(),
            members,
        })
        .collect();
    let version = store.latest_segment_version().await?.unwrap_or(0) + 1;
    let ids = store.put_segments(version, &segments).await?;
    // What a new shopper is assigned by: the dimensions, their weights and the centres.
    let model = SegmentModel {
        dims: run.profiles.dims.iter().map(|&c| s.concepts[c as usize].clone()).collect(),
        idf: run.profiles.idf.clone(),
        centroids: c.centroids.chunks(c.dim).map(<[f32]>::to_vec).collect(),
    };
    let metrics = serde_json::json!({ "silhouette": c.silhouette, "tried": c.tried });
    store
        .put_model(&shopgraph_store::ModelRecord {
            name: SEGMENT_MODEL.into(),
            version,
            kind: "mini-batch k-means over tf-idf concept profiles".into(),
            params: Some(serde_json::to_string(&model).map_err(|e| Failure::Input(e.to_string()))?),
            metrics: Some(metrics.to_string()),
            artifact: None,
            created_at: shopgraph_core::now_ms(),
        })
        .await?;
    if let Some(graph) = graph {
        let mut g = graph.write().unwrap_or_else(|e| e.into_inner());
        for (id, segment) in ids.iter().zip(&segments) {
            g.upsert_segment(*id, &segment.description, &segment.members);
        }
    }
    Ok((version, segments.iter().map(|s| s.members.len()).sum()))
}

/// The name segmentations are recorded under in the store's models.
pub const SEGMENT_MODEL: &str = "segments";

/// A segmentation's means of assigning a shopper it has not seen.
#[derive(Debug, Serialize, Deserialize)]
struct SegmentModel {
    /// Concept subjects, one a dimension.
    dims: Vec<String>,
    idf: Vec<f32>,
    /// One centre a segment, in the order of the segments' keys.
    centroids: Vec<Vec<f32>>,
}

/// A shopper's segment in the newest segmentation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShopperSegment {
    pub shopper: String,
    pub version: i64,
    pub segment: String,
    pub description: String,
    /// True when the segmentation placed them; false when they came later (or changed
    /// nothing it knew) and were assigned to the nearest segment now.
    pub stored: bool,
}

/// The newest segment of a shopper: stored, or assigned now by the nearest centre of
/// their profile as it is. None before any segmentation, or for a shopper with no
/// profile yet.
pub async fn segment_of(
    store: &Store,
    s: &Shopping,
    external: &str,
) -> Result<Option<ShopperSegment>, Failure> {
    let Some(version) = store.latest_segment_version().await? else { return Ok(None) };
    let segments = store.segments(version).await?;
    if let Some(user) = store.user_by_external_id(external).await?
        && let Some(seg) =
            store.segments_of_user(user.id).await?.into_iter().find(|g| g.version == version)
    {
        return Ok(Some(ShopperSegment {
            shopper: external.to_owned(),
            version,
            segment: seg.key,
            description: seg.description,
            stored: true,
        }));
    }
    let Some(record) = store.latest_model(SEGMENT_MODEL).await?.filter(|m| m.version == version)
    else {
        return Ok(None);
    };
    let model: SegmentModel = serde_json::from_str(record.params.as_deref().unwrap_or("{}"))
        .map_err(|e| Failure::Input(format!("segment model {version} is unreadable: {e}")))?;
    let Some(&u) = s.shopper_of.get(external) else { return Ok(None) };
    let slot: HashMap<u32, usize> = model
        .dims
        .iter()
        .enumerate()
        .filter_map(|(i, subject)| s.concept_of.get(subject).map(|&c| (c, i)))
        .collect();
    let Some(v) = shopgraph_insight::segments::profile_vector(
        &s.touched_of(u),
        |c| slot.get(&c).copied(),
        &model.idf,
    ) else {
        return Ok(None);
    };
    let nearest = model
        .centroids
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c.iter().zip(&v).map(|(a, b)| (a - b) * (a - b)).sum::<f32>()))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i.to_string());
    Ok(nearest.and_then(|key| {
        let seg = segments.into_iter().find(|g| g.key == key)?;
        Some(ShopperSegment {
            shopper: external.to_owned(),
            version,
            segment: seg.key,
            description: seg.description,
            stored: false,
        })
    }))
}

/// Stores the strongest `keep` rules as the next rule version and, when given the
/// graph, replaces its bought-together edges. Returns (version, rules stored).
pub async fn save_rules(
    store: &Store,
    graph: Option<&std::sync::RwLock<KnowledgeGraph>>,
    s: &Shopping,
    mined: &Rules,
    keep: usize,
) -> Result<(i64, usize), Failure> {
    let ids = |items: &[u32]| items.iter().filter_map(|&i| s.product_ids[i as usize]).collect();
    let kept: Vec<ProductRule> = mined
        .rules
        .iter()
        .take(keep)
        .map(|r| ProductRule {
            antecedent: ids(&r.antecedent),
            consequent: ids(&r.consequent),
            support: r.support,
            confidence: r.confidence,
            lift: r.lift,
        })
        .filter(|r| !r.antecedent.is_empty() && !r.consequent.is_empty())
        .collect();
    if kept.is_empty() {
        return Err(Failure::Input(
            "no rule met the thresholds, so nothing was stored: lower min_support, min_confidence or min_lift".into(),
        ));
    }
    let version = store.latest_rules_version().await?.unwrap_or(0) + 1;
    store.put_rules(version, &kept).await?;
    if let Some(graph) = graph {
        graph.write().unwrap_or_else(|e| e.into_inner()).set_rules(&kept);
    }
    Ok((version, kept.len()))
}

/// Rules over the shoppers' sessions (cut at pauses over `session_hours`).
pub fn mine(s: &Shopping, session_hours: f64, params: &RuleParams) -> Result<Rules, Failure> {
    if !(session_hours.is_finite() && session_hours > 0.0) {
        return Err(Failure::Input(format!(
            "session_hours must be a positive number of hours, got {session_hours}"
        )));
    }
    Ok(rules::mine(&s.sessions((session_hours * 3_600_000.0) as i64), params)?)
}

// ---- audiences ------------------------------------------------------------------------

/// A campaign audience: every filter given must hold.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceRequest {
    /// In this segment (its key) of the newest segmentation.
    pub segment: Option<u32>,
    /// Interested in this subject (`maker:stephen king`, `category:horror`) ...
    pub interest: Option<String>,
    /// ... with at least this weight (0 when not given).
    pub min_weight: Option<f64>,
    /// Holds these skus ...
    pub has: Option<Vec<String>>,
    /// ... and not these (the rule's other side).
    pub lacks: Option<Vec<String>>,
    /// Active in the last this many days (before the newest event).
    pub active_days: Option<f64>,
    /// Likely to want this sku: the best confidence of a rule over sessions that ends
    /// in it, among the rules whose other side the shopper holds ...
    pub propensity_sku: Option<String>,
    /// ... at least this (0.2 when not given).
    pub min_propensity: Option<f64>,
}

/// One shopper of an audience and why they are in it, in words (one reason a filter).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AudienceMember {
    pub shopper: String,
    pub reasons: Vec<String>,
}

/// Selects an audience from `s`. Segments come from the store's newest segmentation.
pub async fn audience(
    store: &Store,
    s: &Shopping,
    req: &AudienceRequest,
) -> Result<Vec<AudienceMember>, Failure> {
    let version = store.latest_segment_version().await?;
    let mut segment_of: HashMap<UserId, u32> = HashMap::new();
    let mut known = Vec::new();
    let mut described = HashMap::new();
    if let Some(v) = version {
        for seg in store.segments(v).await? {
            let Ok(key) = seg.key.parse::<u32>() else { continue };
            known.push(key);
            for (user, _) in store.segment_members(seg.id).await? {
                segment_of.insert(user, key);
            }
            described.insert(key, seg.description);
        }
    }
    let items = |skus: &[String]| -> Result<Vec<u32>, Failure> {
        let mut items: Vec<u32> =
            skus.iter().map(|sku| s.item_of_sku(sku.trim())).collect::<Result<_, _>>()?;
        items.sort_unstable();
        Ok(items)
    };
    let mut filters = Vec::new();
    if let Some(seg) = req.segment {
        if version.is_none() {
            return Err(Failure::Input(
                "there are no segments yet: compute them first (POST /api/v1/insight/segments or `shopgraph insight segments --save`)".into(),
            ));
        }
        filters.push(Filter::Segment(seg));
    }
    if let Some(subject) = &req.interest {
        filters.push(Filter::Interest {
            subject: subject.clone(),
            min_weight: req.min_weight.unwrap_or(0.0),
        });
    }
    match (&req.has, &req.lacks) {
        (Some(has), lacks) => filters.push(Filter::Rule(Rule {
            antecedent: items(has)?,
            consequent: items(lacks.as_deref().unwrap_or_default())?,
            support: 0.0,
            confidence: 0.0,
            lift: 0.0,
        })),
        (None, Some(_)) => return Err(Failure::Input("lacks needs has".into())),
        (None, None) => {}
    }
    let newest = s.history.iter().flatten().map(|st| st.at).max().unwrap_or(0);
    if let Some(days) = req.active_days {
        if !(days.is_finite() && days >= 0.0) {
            return Err(Failure::Input(format!(
                "active_days must be a number of days ≥ 0, got {days}"
            )));
        }
        filters.push(Filter::ActiveSince(newest - (days * 86_400_000.0) as i64));
    }
    let mut mined = Vec::new();
    if let Some(sku) = &req.propensity_sku {
        let item = s.item_of_sku(sku)?;
        filters.push(Filter::Propensity { item, min: req.min_propensity.unwrap_or(0.2) });
        let params =
            RuleParams { min_support: 0.001, min_confidence: 0.0, min_lift: 1.0, max_len: 3 };
        // Mining takes a while on a large catalog: off the async workers' hands.
        let sessions = s.sessions(24 * 3_600_000);
        let all = tokio::task::spawn_blocking(move || rules::mine(&sessions, &params))
            .await
            .map_err(|e| Failure::Input(format!("mining stopped: {e}")))?;
        if let Ok(all) = all {
            mined = all.rules.into_iter().filter(|r| r.consequent == [item]).collect();
        }
    }
    let shoppers: Vec<audience::Shopper> = (0..s.shoppers.len())
        .map(|u| {
            let mut items: Vec<u32> =
                s.history[u].iter().filter(|st| interaction(st.kind)).map(|st| st.item).collect();
            items.sort_unstable();
            items.dedup();
            audience::Shopper {
                id: u as u32,
                segment: s.shopper_ids[u].and_then(|id| segment_of.get(&id).copied()),
                interests: s.interests[u].iter().filter(|(_, w)| *w > 0.0).cloned().collect(),
                items,
                last_active: s.history[u].last().map(|st| st.at),
            }
        })
        .collect();
    let chosen = audience::select(&shoppers, &filters, &known, &mined)?;
    let names = |items: &[u32]| {
        items.iter().map(|&i| format!("\"{}\"", s.item_name(i))).collect::<Vec<_>>().join(" and ")
    };
    Ok(chosen
        .iter()
        .map(|c| AudienceMember {
            shopper: s.shoppers[c.id as usize].clone(),
            reasons: c
                .reasons
                .iter()
                .map(|r| match r {
                    Reason::Segment(k) => {
                        format!("in segment {k} ({})", described.get(k).map_or("", String::as_str))
                    }
                    Reason::Interest { subject, weight } => {
                        format!("interested in {subject} ({weight:.2})")
                    }
                    Reason::Rule { holds, lacks, .. } if lacks.is_empty() => {
                        format!("has {}", names(holds))
                    }
                    Reason::Rule { holds, lacks, .. } => {
                        format!("has {} but not {}", names(holds), names(lacks))
                    }
                    Reason::Active { last } => format!("active on {}", shopping::date(*last)),
                    Reason::Propensity { item, probability, because } => format!(
                        "{:.0}% likely to want \"{}\" (has {})",
                        100.0 * probability,
                        s.item_name(*item),
                        names(because)
                    ),
                })
                .collect(),
        })
        .collect())
}

/// An audience as CSV: `shopper,reasons` with the reasons joined by "; ".
pub fn audience_csv(members: &[AudienceMember]) -> String {
    let quote = |field: &str| format!("\"{}\"", field.replace('"', "\"\""));
    let mut out = String::from("shopper,reasons\n");
    for m in members {
        let _ = writeln!(out, "{},{}", quote(&m.shopper), quote(&m.reasons.join("; ")));
    }
    out
}

// ---- experiments ----------------------------------------------------------------------

/// Parses `NAME=WEIGHT` arms (a bare name weighs 1).
pub fn arms(specs: &[String]) -> Result<Vec<Arm>, Failure> {
    specs
        .iter()
        .map(|a| {
            let (name, weight) = a.split_once('=').unwrap_or((a, "1"));
            let weight = weight.trim().parse().map_err(|_| {
                Failure::Input(format!("arm {a}: the weight must be a whole number"))
            })?;
            Ok(Arm { name: name.trim().to_owned(), weight })
        })
        .collect()
}

/// Click-through and conversion per arm, and per arm within each segment of the newest
/// segmentation, from the recommendation-shown, click and purchase events.
pub async fn experiment(
    store: &Store,
    s: &Shopping,
    experiment: &Experiment,
    window_hours: f64,
) -> Result<(Vec<ArmReport>, Vec<(String, Vec<ArmReport>)>), Failure> {
    if !(window_hours.is_finite() && window_hours > 0.0) {
        return Err(Failure::Input(format!("window_hours must be positive, got {window_hours}")));
    }
    let mut events = Vec::new();
    for (u, h) in s.history.iter().enumerate() {
        for st in h {
            let touch = match st.kind {
                EventKind::RecommendationShown => Touch::Shown,
                EventKind::Click => Touch::Click,
                EventKind::Purchase => Touch::Purchase,
                _ => continue,
            };
            events.push((u as u32, st.item, touch, st.at));
        }
    }
    let per_shopper = experiments::outcomes(&events, (window_hours * 3_600_000.0) as i64);
    let all = experiments::report(
        experiment,
        per_shopper.iter().map(|(&u, &o)| (s.shoppers[u as usize].as_str(), o)),
    );
    let mut by_segment = Vec::new();
    if let Some(v) = store.latest_segment_version().await? {
        for seg in store.segments(v).await? {
            let members: std::collections::HashSet<UserId> =
                store.segment_members(seg.id).await?.into_iter().map(|(u, _)| u).collect();
            let rows = experiments::report(
                experiment,
                per_shopper
                    .iter()
                    .filter(|(u, _)| {
                        s.shopper_ids[**u as usize].is_some_and(|id| members.contains(&id))
                    })
                    .map(|(&u, &o)| (s.shoppers[u as usize].as_str(), o)),
            );
            by_segment.push((format!("{} ({})", seg.key, seg.description), rows));
        }
    }
    Ok((all, by_segment))
}

// ---- forecasts ------------------------------------------------------------------------

/// One series' history, forecast and backtest.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Forecast {
    /// `sku:…` or `category:…`.
    pub of: String,
    pub name: String,
    /// The Monday the history starts, `YYYY-MM-DD`.
    pub first_week: String,
    /// Demand (events) per week.
    pub history: Vec<f64>,
    /// The weeks after the history.
    pub forecast: Vec<f64>,
    /// The smoothing forecast's MASE on the held-out weeks, when the history is long
    /// enough for a backtest; below 1 beats the seasonal-naive forecast in-sample.
    pub mase: Option<f64>,
    /// The seasonal-naive forecast's MASE on the same weeks.
    pub mase_naive: Option<f64>,
    /// Stock over the mean weekly forecast (products only).
    pub weeks_of_stock: Option<f64>,
}

/// Season and backtest lengths, in weeks.
pub const PERIOD: usize = 52;
pub const HORIZON: usize = 12;

/// The forecast of a product (`sku:…`) or a category (`category:…`), `ahead` weeks.
pub fn forecast_of(s: &Shopping, of: &str, ahead: usize) -> Result<Forecast, Failure> {
    let shopping::Demand { first_week: first, items, categories, by_category: cats } =
        shopping::demand(s)?;
    let (y, name, stock) = if let Some(sku) = of.strip_prefix("sku:") {
        let i = s.item_of_sku(sku)? as usize;
        (&items[i], s.titles[i].clone(), Some(s.stock[i]))
    } else if of.starts_with("category:") {
        let c = s
            .concept_of
            .get(of)
            .and_then(|c| categories.iter().position(|k| k == c))
            .ok_or_else(|| Failure::Input(format!("no demand in {of}")))?;
        (&cats[c], s.concept_names[categories[c] as usize].clone(), None)
    } else {
        return Err(Failure::Input(format!("{of:?}: write sku:SKU or category:KEY")));
    };
    let model = forecast::fit(y, PERIOD)?;
    let f = model.forecast(ahead);
    let bt = forecast::backtest(y, PERIOD, HORIZON).ok();
    let weekly = f.iter().sum::<f64>() / ahead.max(1) as f64;
    Ok(Forecast {
        of: of.to_owned(),
        name,
        first_week: shopping::date(forecast::week_start(first)),
        history: y.clone(),
        forecast: f,
        mase: bt.as_ref().map(forecast::Backtest::mase),
        mase_naive: bt.as_ref().map(forecast::Backtest::mase_naive),
        weeks_of_stock: stock.filter(|_| weekly > 0.0).map(|s| s as f64 / weekly),
    })
}

/// Demand over time with the forecast, as an SVG line chart (history solid, forecast
/// dashed), readable without a script.
pub fn chart_svg(f: &Forecast) -> String {
    let (w, h, left, bottom, top) = (720.0, 300.0, 48.0, 32.0, 28.0);
    let n = f.history.len() + f.forecast.len();
    let max = f.history.iter().chain(&f.forecast).copied().fold(1.0, f64::max);
    let x = |i: usize| left + (w - left - 12.0) * i as f64 / (n.max(2) - 1) as f64;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / max);
    let path = |points: &mut dyn Iterator<Item = (usize, f64)>| {
        points
            .enumerate()
            .map(|(k, (i, v))| {
                format!("{}{:.1},{:.1}", if k == 0 { "M" } else { " L" }, x(i), y(v))
            })
            .collect::<String>()
    };
    let history = path(&mut f.history.iter().copied().enumerate());
    let last = f.history.len().saturating_sub(1);
    let joined = f.history.last().copied().into_iter().map(|v| (last, v));
    let ahead =
        path(&mut joined.chain(f.forecast.iter().enumerate().map(|(i, &v)| (last + 1 + i, v))));
    let escape = |t: &str| t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <title>Weekly demand for {name}, with the forecast</title>\n\
         <text x=\"{left}\" y=\"16\" font-weight=\"bold\">{name}: weekly demand from {first} and the next {k} weeks</text>\n",
        name = escape(&f.name),
        first = f.first_week,
        k = f.forecast.len(),
    );
    for tick in 0..=4 {
        let v = max * f64::from(tick) / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>",
            w - 12.0,
            left - 6.0,
            y(v) + 4.0,
            y = y(v),
        );
    }
    let _ = writeln!(
        svg,
        "<path d=\"{history}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>\n\
         <path d=\"{ahead}\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" stroke-dasharray=\"5 3\"/>\n\
         <text x=\"{left}\" y=\"{}\">weeks →  (blue: demand; red, dashed: forecast)</text>\n</svg>",
        h - 8.0
    );
    svg
}

// ---- the HTTP API ---------------------------------------------------------------------

/// How stale a storefront's read of next steps may be, in seconds.
const RECENT_SECS: u64 = 300;

/// The shape the analyses read, kept while the store's marks and events stay the same.
#[derive(Default)]
pub(crate) struct Cache {
    current: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    /// The store's sync marks and last event when it was read.
    mark: String,
    read_at: std::time::Instant,
    shopping: Arc<Shopping>,
    /// What shoppers look at next; None when no session has two steps.
    next: Option<Arc<Transitions>>,
}

impl Cache {
    /// The store as it is now (read again when anything changed): for analyses an
    /// agent asks for.
    pub(crate) async fn get(&self, store: &Store) -> Result<Arc<Shopping>, Failure> {
        Ok(self.entry(store, None).await?.0)
    }

    /// The store as it was at most [`RECENT_SECS`] ago: for what a storefront asks on
    /// every page, which must not read the whole store after each event.
    async fn recent(
        &self,
        store: &Store,
    ) -> Result<(Arc<Shopping>, Option<Arc<Transitions>>), Failure> {
        self.entry(store, Some(std::time::Duration::from_secs(RECENT_SECS))).await
    }

    async fn entry(
        &self,
        store: &Store,
        max_age: Option<std::time::Duration>,
    ) -> Result<(Arc<Shopping>, Option<Arc<Transitions>>), Failure> {
        let mut current = self.current.lock().await;
        if let (Some(c), Some(age)) = (current.as_ref(), max_age)
            && c.read_at.elapsed() < age
        {
            return Ok((Arc::clone(&c.shopping), c.next.clone()));
        }
        let mark =
            format!("{:?} {}", store.sync_marks().await?.to_array(), store.last_event_seq().await?);
        if let Some(c) = current.as_ref()
            && c.mark == mark
        {
            return Ok((Arc::clone(&c.shopping), c.next.clone()));
        }
        let shopping = Arc::new(read_store(store).await?);
        let next = Transitions::count(&shopping.sequences(24 * 3_600_000), 1).ok().map(Arc::new);
        *current = Some(Cached {
            mark,
            read_at: std::time::Instant::now(),
            shopping: Arc::clone(&shopping),
            next: next.clone(),
        });
        Ok((shopping, next))
    }
}

pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(segments, compute_segments))
        .routes(routes!(shopper_segment))
        .routes(routes!(list_rules, compute_rules))
        .routes(routes!(next_steps))
        .routes(routes!(select_audience))
        .routes(routes!(demand_forecast))
        .routes(routes!(experiment_report))
}

/// One segment of the newest segmentation.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentOut {
    pub segment: String,
    pub description: String,
    pub shoppers: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentList {
    /// None before the first segmentation.
    pub version: Option<i64>,
    pub segments: Vec<SegmentOut>,
}

/// The newest segmentation: each segment's top concepts and size.
#[utoipa::path(
    get, path = "/api/v1/insight/segments", tag = "insight",
    responses((status = 200, body = SegmentList)),
    security(("bearer" = []))
)]
async fn segments(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<SegmentList>, ApiError> {
    caller.require(Role::Agent)?;
    let p = state.platform()?;
    let version = p.store.latest_segment_version().await?;
    let mut out = Vec::new();
    if let Some(v) = version {
        for s in p.store.segments(v).await? {
            out.push(SegmentOut {
                segment: s.key,
                description: s.description,
                shoppers: s.n_members,
            });
        }
    }
    Ok(Json(SegmentList { version, segments: out }))
}

/// A shopper's segment: the one the newest segmentation gave them, or, for a shopper
/// who came later, the nearest one to their profile now.
#[utoipa::path(
    get, path = "/api/v1/insight/segments/shopper/{user}", tag = "insight",
    params(("user" = String, Path, description = "The shop's id of the shopper")),
    responses((status = 200, body = ShopperSegment), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn shopper_segment(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> Result<Json<ShopperSegment>, ApiError> {
    caller.require_key()?;
    let p = state.platform()?;
    let s = p.insight.get(&p.store).await?;
    segment_of(&p.store, &s, &user).await?.map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "no segment for {user:?}: no segmentation yet, no such shopper, or nothing in their profile"
        ))
    })
}

/// How to segment (defaults: k from 2 to 12, seed 42, 200 concepts).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentRequest {
    pub k_min: Option<usize>,
    pub k_max: Option<usize>,
    pub seed: Option<u64>,
    pub dims: Option<usize>,
}

/// A number of segments tried and its mean silhouette.
#[derive(Debug, Serialize, ToSchema)]
pub struct KScore {
    pub k: usize,
    pub silhouette: f64,
}

/// A segmentation run and what it stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentRunOut {
    pub version: i64,
    pub k: usize,
    pub silhouette: f64,
    /// Every k tried and its silhouette.
    pub tried: Vec<KScore>,
    pub memberships: usize,
    pub segments: Vec<SegmentOut>,
}

/// Segments the shoppers again (k chosen by silhouette) and stores the run as the next
/// version; the graph gets the membership edges at once.
#[utoipa::path(
    post, path = "/api/v1/insight/segments", tag = "insight", request_body = SegmentRequest,
    responses((status = 200, body = SegmentRunOut), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn compute_segments(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Body(req): Body<SegmentRequest>,
) -> Result<Json<SegmentRunOut>, ApiError> {
    caller.require(Role::Admin)?;
    let p = state.platform()?;
    let s = p.insight.get(&p.store).await?;
    let d = SegmentParams::default();
    let params = SegmentParams {
        k_min: req.k_min.unwrap_or(d.k_min),
        k_max: req.k_max.unwrap_or(d.k_max),
        seed: req.seed.unwrap_or(d.seed),
        ..d
    };
    let dims = bounded("dims", req.dims, 200, 2_000)?;
    let shopping = Arc::clone(&s);
    let run = tokio::task::spawn_blocking(move || shopping::segment(&shopping, &params, dims))
        .await
        .map_err(ApiError::internal)?
        .map_err(Failure::from)?;
    let (version, memberships) = save_segments(&p.store, Some(&p.graph), &s, &run).await?;
    let sizes = run.clustering.sizes();
    Ok(Json(SegmentRunOut {
        version,
        k: run.clustering.k(),
        silhouette: run.clustering.silhouette,
        tried: run
            .clustering
            .tried
            .iter()
            .map(|&(k, silhouette)| KScore { k, silhouette })
            .collect(),
        memberships,
        segments: run
            .descriptions
            .iter()
            .enumerate()
            .map(|(i, d)| SegmentOut {
                segment: i.to_string(),
                description: d.clone(),
                shoppers: sizes[i] as i64,
            })
            .collect(),
    }))
}

/// A rule with its products named.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleOut {
    /// Skus of the side shoppers chose first.
    pub has: Vec<String>,
    pub has_titles: Vec<String>,
    /// Skus they also chose.
    pub also: Vec<String>,
    pub also_titles: Vec<String>,
    pub support: f64,
    pub confidence: f64,
    pub lift: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    pub version: Option<i64>,
    pub rules: Vec<RuleOut>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RuleListParams {
    /// How many (1 to 1000; 50 when not given).
    #[param(minimum = 1, maximum = 1000)]
    n: Option<usize>,
}

async fn rules_out(p: &Platform, rules: &[ProductRule]) -> Result<Vec<RuleOut>, ApiError> {
    let mut out = Vec::with_capacity(rules.len());
    let mut names: HashMap<shopgraph_core::ProductId, (String, String)> = HashMap::new();
    for r in rules {
        let mut sides = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
        for (side, ids) in [&r.antecedent, &r.consequent].into_iter().enumerate() {
            for id in ids {
                if !names.contains_key(id)
                    && let Some(product) = p.store.product(*id).await?
                {
                    names.insert(*id, (product.sku, product.title));
                }
                if let Some((sku, title)) = names.get(id) {
                    sides[side].0.push(sku.clone());
                    sides[side].1.push(title.clone());
                }
            }
        }
        let [(has, has_titles), (also, also_titles)] = sides;
        out.push(RuleOut {
            has,
            has_titles,
            also,
            also_titles,
            support: r.support,
            confidence: r.confidence,
            lift: r.lift,
        });
    }
    Ok(out)
}

/// The newest association rules, strongest (by lift) first.
#[utoipa::path(
    get, path = "/api/v1/insight/rules", tag = "insight", params(RuleListParams),
    responses((status = 200, body = RuleList), (status = 400, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_rules(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<RuleListParams>,
) -> Result<Json<RuleList>, ApiError> {
    caller.require(Role::Agent)?;
    let n = bounded("n", params.n, 50, 1_000)?;
    let p = state.platform()?;
    let version = p.store.latest_rules_version().await?;
    let rules = match version {
        Some(v) => p.store.rules(v).await?.into_iter().take(n).collect(),
        None => Vec::new(),
    };
    Ok(Json(RuleList { version, rules: rules_out(&p, &rules).await? }))
}

/// How to mine (defaults: sessions cut at 24 h pauses, support ≥ 1%, confidence ≥ 0.3,
/// lift ≥ 1.5, up to 3 items, 10,000 rules kept).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    pub session_hours: Option<f64>,
    pub min_support: Option<f64>,
    pub min_confidence: Option<f64>,
    pub min_lift: Option<f64>,
    pub max_len: Option<usize>,
    pub keep: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleRunOut {
    pub version: i64,
    pub baskets: usize,
    pub itemsets: usize,
    pub rules: usize,
    pub stored: usize,
    pub strongest: Vec<RuleOut>,
}

/// Mines the rules again over the shoppers' sessions and stores the strongest as the
/// next version: the graph's bought-together edges at once, and the recommender's
/// "frequently bought together" after it is refitted (which this starts).
#[utoipa::path(
    post, path = "/api/v1/insight/rules", tag = "insight", request_body = RuleRequest,
    responses((status = 200, body = RuleRunOut), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn compute_rules(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Body(req): Body<RuleRequest>,
) -> Result<Json<RuleRunOut>, ApiError> {
    caller.require(Role::Admin)?;
    let p = state.platform()?;
    let s = p.insight.get(&p.store).await?;
    let d = RuleParams::default();
    let params = RuleParams {
        min_support: req.min_support.unwrap_or(d.min_support),
        min_confidence: req.min_confidence.unwrap_or(0.3),
        min_lift: req.min_lift.unwrap_or(1.5),
        max_len: req.max_len.unwrap_or(d.max_len),
    };
    let keep = bounded("keep", req.keep, 10_000, 100_000)?;
    let hours = req.session_hours.unwrap_or(24.0);
    let shopping = Arc::clone(&s);
    let mined = tokio::task::spawn_blocking(move || mine(&shopping, hours, &params))
        .await
        .map_err(ApiError::internal)??;
    let (version, stored) = save_rules(&p.store, Some(&p.graph), &s, &mined, keep).await?;
    let platform = Arc::clone(&p);
    tokio::spawn(async move {
        if let Err(e) = platform.reload_tools().await {
            tracing::warn!("refitting after new rules: {e}");
        }
    });
    let strongest = p.store.rules(version).await?.into_iter().take(10).collect::<Vec<_>>();
    Ok(Json(RuleRunOut {
        version,
        baskets: mined.baskets,
        itemsets: mined.itemsets.len(),
        rules: mined.rules.len(),
        stored,
        strongest: rules_out(&p, &strongest).await?,
    }))
}

/// A likely next step.
#[derive(Debug, Serialize, ToSchema)]
pub struct NextOut {
    pub sku: String,
    pub title: String,
    /// Times a shopper went from the product to this one.
    pub count: u32,
    /// Share of the steps out of the product.
    pub probability: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NextList {
    pub items: Vec<NextOut>,
}

/// What customers usually look at next after this product (first-order transitions
/// over sessions).
#[utoipa::path(
    get, path = "/api/v1/insight/next/{sku}", tag = "insight",
    params(("sku" = String, Path, description = "The product"), crate::storefront::ListParams),
    responses((status = 200, body = NextList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn next_steps(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(sku): Path<String>,
    Params(params): Params<crate::storefront::ListParams>,
) -> Result<Json<NextList>, ApiError> {
    caller.require_key()?;
    let n = bounded("n", params.n, 10, 100)?;
    let p = state.platform()?;
    let (s, t) = p.insight.recent(&p.store).await?;
    let item = s.item_of_sku(&sku).map_err(|e| ApiError::not_found(e.to_string()))?;
    let items = t
        .map(|t| t.next(item, n))
        .unwrap_or_default()
        .into_iter()
        .map(|x| NextOut {
            sku: s.skus[x.to as usize].clone(),
            title: s.titles[x.to as usize].clone(),
            count: x.count,
            probability: x.probability,
        })
        .collect();
    Ok(Json(NextList { items }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AudienceParams {
    /// `json` (the default) or `csv` (every member, for a mailing tool).
    format: Option<String>,
    /// Members listed in JSON (1 to 10,000; 100 when not given); the size counts all.
    #[param(minimum = 1, maximum = 10000)]
    n: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AudienceOut {
    /// How many shoppers meet every filter.
    pub size: usize,
    pub members: Vec<AudienceMember>,
}

/// A campaign audience: the shoppers who meet every filter, each with the reasons.
#[utoipa::path(
    post, path = "/api/v1/insight/audience", tag = "insight", request_body = AudienceRequest, params(AudienceParams),
    responses(
        (status = 200, body = AudienceOut, description = "JSON, or text/csv with format=csv"),
        (status = 400, body = ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn select_audience(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<AudienceParams>,
    Body(req): Body<AudienceRequest>,
) -> Result<Response, ApiError> {
    caller.require(Role::Agent)?;
    let n = bounded("n", params.n, 100, 10_000)?;
    let p = state.platform()?;
    let s = p.insight.get(&p.store).await?;
    let members = audience(&p.store, &s, &req).await?;
    match params.format.as_deref() {
        Some("csv") => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"audience.csv\""),
            ],
            audience_csv(&members),
        )
            .into_response()),
        None | Some("json") => {
            let size = members.len();
            Ok(Json(AudienceOut { size, members: members.into_iter().take(n).collect() })
                .into_response())
        }
        Some(other) => {
            Err(ApiError::bad_request(format!("format must be json or csv, got {other:?}")))
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForecastParams {
    /// `sku:SKU` or `category:KEY`.
    of: String,
    /// Weeks ahead (1 to 52; 8 when not given).
    #[param(minimum = 1, maximum = 52)]
    weeks: Option<usize>,
    /// `json` (the default) or `svg` (a chart of demand and the forecast).
    format: Option<String>,
}

/// Weekly demand for a product or a category with its forecast and backtest, as JSON
/// or as an SVG chart.
#[utoipa::path(
    get, path = "/api/v1/insight/forecast", tag = "insight", params(ForecastParams),
    responses(
        (status = 200, body = Forecast, description = "JSON, or image/svg+xml with format=svg"),
        (status = 400, body = ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn demand_forecast(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<ForecastParams>,
) -> Result<Response, ApiError> {
    caller.require(Role::Agent)?;
    let weeks = bounded("weeks", params.weeks, 8, 52)?;
    let p = state.platform()?;
    let s = p.insight.get(&p.store).await?;
    let of = params.of.clone();
    let f = tokio::task::spawn_blocking(move || forecast_of(&s, &of, weeks))
        .await
        .map_err(ApiError::internal)??;
    match params.format.as_deref() {
        Some("svg") => {
            Ok(([(header::CONTENT_TYPE, "image/svg+xml")], chart_svg(&f)).into_response())
        }
        None | Some("json") => Ok(Json(f).into_response()),
        Some(other) => {
            Err(ApiError::bad_request(format!("format must be json or svg, got {other:?}")))
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExperimentParams {
    /// Arms as `NAME=WEIGHT`, comma-separated, the control first; when not given, the
    /// configured experiment's if it has this name, else `control=1,treatment=1`.
    arms: Option<String>,
    /// A click or purchase counts for an impression this many hours after it (24).
    window_hours: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ArmOut {
    pub arm: String,
    pub shoppers: usize,
    pub impressions: u64,
    pub clicks: u64,
    pub purchases: u64,
    /// [rate, low, high] of a 95% Wilson interval.
    pub ctr: [f64; 3],
    pub conversion: [f64; 3],
    /// Click-through minus the control's, [difference, low, high] at 95%.
    pub ctr_vs_control: Option<[f64; 3]>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExperimentOut {
    pub experiment: String,
    pub arms: Vec<ArmOut>,
    /// The same per segment of the newest segmentation.
    pub by_segment: Vec<SegmentArms>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentArms {
    /// The segment's key and description.
    pub segment: String,
    pub arms: Vec<ArmOut>,
}

fn arm_out(r: &ArmReport) -> ArmOut {
    let t = |i: experiments::Interval| [i.rate, i.low, i.high];
    ArmOut {
        arm: r.arm.clone(),
        shoppers: r.shoppers,
        impressions: r.outcome.shown,
        clicks: r.outcome.clicked,
        purchases: r.outcome.bought,
        ctr: t(r.ctr),
        conversion: t(r.conversion),
        ctr_vs_control: r.ctr_lift.map(t),
    }
}

/// Click-through and conversion of each arm of an experiment (shoppers split by a
/// stable hash of their id), overall and per segment.
#[utoipa::path(
    get, path = "/api/v1/insight/experiments/{name}", tag = "insight",
    params(("name" = String, Path, description = "The experiment"), ExperimentParams),
    responses((status = 200, body = ExperimentOut), (status = 400, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn experiment_report(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Params(params): Params<ExperimentParams>,
) -> Result<Json<ExperimentOut>, ApiError> {
    caller.require(Role::Agent)?;
    // The running experiment's own arms when it is the one asked about.
    let e = match (&params.arms, &state.experiment) {
        (None, Some((running, _))) if running.name == name => running.clone(),
        (given, _) => {
            let specs: Vec<String> = given
                .as_deref()
                .unwrap_or("control=1,treatment=1")
                .split(',')
                .map(str::to_owned)
                .collect();
            Experiment::new(&name, arms(&specs)?).map_err(Failure::from)?
        }
    };
    let p = state.platform()?;
    let s = p.insight.get(&p.store).await?;
    let (all, by_segment) =
        experiment(&p.store, &s, &e, params.window_hours.unwrap_or(24.0)).await?;
    Ok(Json(ExperimentOut {
        experiment: name,
        arms: all.iter().map(arm_out).collect(),
        by_segment: by_segment
            .iter()
            .map(|(seg, rows)| SegmentArms {
                segment: seg.clone(),
                arms: rows.iter().map(arm_out).collect(),
            })
            .collect(),
    }))
}
