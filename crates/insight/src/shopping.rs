//! The data the analyses read, in one shape whatever it came from: items with their
//! graph concepts, and each shopper's history in time order and stated interests.
//! Built from a data set (a public one, or the store's catalog and events read out as
//! one), with the helpers that turn it into the analyses' inputs: sessions, profile
//! vectors, weekly demand.

use std::collections::HashMap;
use std::time::Instant;

use shopgraph_core::event::EventKind;
use shopgraph_core::{ProductId, UserId};
use shopgraph_import::Dataset;

use crate::InsightError;
use crate::forecast;
use crate::segments::{self, Clustering, SegmentParams};

type Result<T> = std::result::Result<T, InsightError>;

/// One event of a shopper's history.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub at: i64,
    pub item: u32,
    pub kind: EventKind,
}

/// What the analyses read: items and their concepts, shoppers and their histories.
#[derive(Default)]
pub struct Shopping {
    pub skus: Vec<String>,
    /// The store's id of each item (reading a data set gives none).
    pub product_ids: Vec<Option<ProductId>>,
    pub titles: Vec<String>,
    pub stock: Vec<i64>,
    /// Each item's concepts (indices into `concepts`).
    pub item_concepts: Vec<Vec<u32>>,
    /// Each item's most specific category concept.
    pub item_category: Vec<Option<u32>>,
    /// Concept subjects as interests name them: `maker:stephen king`, `category:horror`,
    /// `publisher:tor`, `decade:1990s`.
    pub concepts: Vec<String>,
    pub concept_names: Vec<String>,
    pub concept_of: HashMap<String, u32>,
    /// Item index by sku.
    pub item_of: HashMap<String, u32>,
    pub shoppers: Vec<String>,
    /// Shopper index by external id.
    pub shopper_of: HashMap<String, usize>,
    /// The store's id of each shopper (reading a data set gives none).
    pub shopper_ids: Vec<Option<UserId>>,
    /// Each shopper's events on items, in time order.
    pub history: Vec<Vec<Step>>,
    /// Each shopper's stated interests: (subject, weight), negative for a dislike.
    pub interests: Vec<Vec<(String, f64)>>,
}

/// An interest's subject as a concept: the graph's `author:` and `brand:` are makers
/// here, and its `year:1990s` a decade.
fn concept_subject(subject: &str) -> std::borrow::Cow<'_, str> {
    match subject.split_once(':') {
        Some(("author" | "brand", key)) => format!("maker:{key}").into(),
        Some(("year", decade)) => format!("decade:{decade}").into(),
        _ => subject.into(),
    }
}

/// The event kind that counts as demand among `kinds`: purchases, or ratings where
/// there are no purchases (the public data sets, where MovieLens' ratings carry the
/// dates).
pub fn demand_kind(mut kinds: impl Iterator<Item = EventKind>) -> EventKind {
    if kinds.any(|k| k == EventKind::Purchase) { EventKind::Purchase } else { EventKind::Rating }
}

/// Event kinds that show interest in an item.
pub fn interaction(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::View
            | EventKind::Click
            | EventKind::AddToCart
            | EventKind::Purchase
            | EventKind::Rating
            | EventKind::Review
    )
}

impl Shopping {
    pub fn from_dataset(data: &Dataset) -> Shopping {
        let mut s = Shopping::default();
        let category_name: HashMap<&str, &str> =
            data.categories.iter().map(|c| (c.key.as_str(), c.name.as_str())).collect();
        for p in &data.products {
            s.item_of.insert(p.sku.clone(), s.skus.len() as u32);
            s.skus.push(p.sku.clone());
            s.titles.push(p.title.clone());
            s.stock.push(p.stock);
            let mut concepts = Vec::new();
            if let Some(m) = &p.maker {
                concepts.push(s.concept(format!("maker:{}", m.key), &m.name));
            }
            if let Some(m) = &p.publisher {
                concepts.push(s.concept(format!("publisher:{}", m.key), &m.name));
            }
            let mut deepest: Option<(usize, u32)> = None;
            for key in &p.category_keys {
                let name = category_name.get(key.as_str()).copied().unwrap_or(key);
                let c = s.concept(format!("category:{key}"), name);
                concepts.push(c);
                let depth = key.matches('/').count();
                if deepest.is_none_or(|(d, _)| depth > d) {
                    deepest = Some((depth, c));
                }
            }
            if let Some(year) = p.year {
                let decade = year.div_euclid(10) * 10;
                concepts.push(s.concept(format!("decade:{decade}s"), &format!("the {decade}s")));
            }
            // A category listed twice is one concept.
            let mut seen = Vec::with_capacity(concepts.len());
            concepts.retain(|c| {
                !seen.contains(c) && {
                    seen.push(*c);
                    true
                }
            });
            s.item_concepts.push(concepts);
            s.item_category.push(deepest.map(|(_, c)| c));
        }
        for e in &data.events {
            let Some(&item) = e.product.as_deref().and_then(|sku| s.item_of.get(sku)) else {
                continue;
            };
            let u = match s.shopper_of.get(e.user.as_str()) {
                Some(&u) => u,
                None => {
                    s.shoppers.push(e.user.clone());
                    s.history.push(Vec::new());
                    s.shopper_of.insert(e.user.clone(), s.shoppers.len() - 1);
                    s.shoppers.len() - 1
                }
            };
            s.history[u].push(Step { at: e.occurred_at, item, kind: e.kind });
        }
        for h in &mut s.history {
            h.sort_by_key(|step| (step.at, step.item));
        }
        s.product_ids = vec![None; s.skus.len()];
        s.shopper_ids = vec![None; s.shoppers.len()];
        s.interests = vec![Vec::new(); s.shoppers.len()];
        s
    }

    /// Adds a stated interest (negative weight: a dislike) to the shopper with this
    /// external id, who is added when they have no events yet.
    pub fn add_interest(
        &mut self,
        external: &str,
        id: Option<UserId>,
        subject: String,
        weight: f64,
    ) {
        let u = match self.shopper_of.get(external) {
            Some(&u) => u,
            None => {
                self.shoppers.push(external.to_owned());
                self.shopper_ids.push(id);
                self.history.push(Vec::new());
                self.interests.push(Vec::new());
                self.shopper_of.insert(external.to_owned(), self.shoppers.len() - 1);
                self.shoppers.len() - 1
            }
        };
        self.interests[u].push((subject, weight));
    }

    fn concept(&mut self, subject: String, name: &str) -> u32 {
        if let Some(&c) = self.concept_of.get(&subject) {
            return c;
        }
        let c = self.concepts.len() as u32;
        self.concept_of.insert(subject.clone(), c);
        self.concepts.push(subject);
        self.concept_names.push(name.to_owned());
        c
    }

    /// Each shopper's interactions cut into sessions at pauses over `gap_ms`.
    pub fn sessions(&self, gap_ms: i64) -> Vec<Vec<u32>> {
        self.cut(gap_ms, true)
    }

    /// Each session's interactions in the order they happened, for sequences: a step
    /// at the very time of the one before is no later than it, so it is left out (a
    /// data set without times, such as Book-Crossing, has no sequences).
    pub fn sequences(&self, gap_ms: i64) -> Vec<Vec<u32>> {
        self.cut(gap_ms, false)
    }

    /// The event kind that counts as demand here (see [`demand_kind`]).
    pub fn demand_kind(&self) -> EventKind {
        demand_kind(self.history.iter().flatten().map(|st| st.kind))
    }

    /// Sessions of interactions cut at pauses over `gap_ms`; `ties` keeps a step at the
    /// very time of the one before.
    fn cut(&self, gap_ms: i64, ties: bool) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        for h in &self.history {
            let mut session = Vec::new();
            let mut last = i64::MIN;
            for step in h.iter().filter(|s| interaction(s.kind)) {
                if !ties && step.at == last {
                    continue;
                }
                if !session.is_empty() && step.at.saturating_sub(last) > gap_ms {
                    out.push(std::mem::take(&mut session));
                }
                session.push(step.item);
                last = step.at;
            }
            if !session.is_empty() {
                out.push(session);
            }
        }
        out
    }

    /// Per shopper, the concepts of what they did and said they like (dislikes and
    /// "not interested" count against).
    pub fn touched(&self) -> Vec<Vec<(u32, f32)>> {
        (0..self.shoppers.len()).map(|u| self.touched_of(u)).collect()
    }

    /// One shopper's concepts: +1 for each interaction with an item that has it, −1
    /// for each "not interested", and three times the weight of a stated interest.
    pub fn touched_of(&self, u: usize) -> Vec<(u32, f32)> {
        let mut t = Vec::new();
        for step in &self.history[u] {
            let w = match step.kind {
                EventKind::Dismiss => -1.0,
                k if interaction(k) => 1.0,
                _ => continue,
            };
            t.extend(self.item_concepts[step.item as usize].iter().map(|&c| (c, w)));
        }
        for (subject, weight) in &self.interests[u] {
            if let Some(&c) = self.concept_of.get(concept_subject(subject).as_ref()) {
                t.push((c, 3.0 * *weight as f32));
            }
        }
        t
    }

    pub fn item_name(&self, item: u32) -> &str {
        &self.titles[item as usize]
    }

    /// The item index of a sku.
    pub fn item_of_sku(&self, sku: &str) -> Result<u32> {
        self.item_of
            .get(sku)
            .copied()
            .ok_or_else(|| InsightError::Invalid(format!("no product has the sku {sku}")))
    }
}

/// A segmentation with what it is made of.
pub struct SegmentRun {
    pub profiles: segments::Profiles,
    pub clustering: Clustering,
    /// Per segment, its top concepts in words.
    pub descriptions: Vec<String>,
    pub secs: f64,
}

pub fn segment(s: &Shopping, params: &SegmentParams, dims: usize) -> Result<SegmentRun> {
    let started = Instant::now();
    let profiles = segments::profile_vectors(&s.touched(), dims);
    let d = profiles.dims.len();
    let clustering = segments::cluster(&profiles.vectors, d, params)?;
    let mean = segments::mean(&profiles.vectors, d);
    let descriptions = (0..clustering.k())
        .map(|c| {
            clustering
                .describe(c, &mean, 4)
                .iter()
                .map(|&(dim, _)| s.concept_names[profiles.dims[dim] as usize].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    Ok(SegmentRun { profiles, clustering, descriptions, secs: started.elapsed().as_secs_f64() })
}

/// The backtest of one level (products or categories).
pub struct Accuracy {
    pub series: usize,
    pub skipped: usize,
    pub mase: f64,
    pub mase_naive: f64,
    pub median_mase: f64,
    /// Sum of the forecast's absolute errors over the seasonal-naive forecast's.
    pub relative_mae: f64,
    pub better: usize,
    /// Series where the seasonal-naive forecast erred less.
    pub worse: usize,
    /// Series whose chosen method was seasonal smoothing, smoothing without a season,
    /// and a recent median.
    pub methods: [usize; 3],
}

pub fn accuracy(series: &[Vec<f64>], period: usize, horizon: usize) -> Accuracy {
    let mut mases = Vec::new();
    let (mut sum, mut sum_naive, mut abs, mut abs_naive, mut better, mut skipped) =
        (0.0, 0.0, 0.0, 0.0, 0, 0);
    let mut methods = [0; 3];
    let mut worse = 0;
    for y in series {
        match forecast::backtest(y, period, horizon) {
            Ok(bt) => {
                mases.push(bt.mase());
                sum += bt.mase();
                sum_naive += bt.mase_naive();
                abs += bt.mae;
                abs_naive += bt.mae_naive;
                better += usize::from(bt.mae < bt.mae_naive);
                worse += usize::from(bt.mae > bt.mae_naive);
                methods[match bt.model.method {
                    forecast::Method::Smoothing(_) if bt.model.period > 0 => 0,
                    forecast::Method::Smoothing(_) => 1,
                    forecast::Method::RecentMedian(_) => 2,
                }] += 1;
            }
            Err(_) => skipped += 1,
        }
    }
    mases.sort_by(f64::total_cmp);
    let n = mases.len().max(1) as f64;
    Accuracy {
        series: mases.len(),
        skipped,
        mase: sum / n,
        mase_naive: sum_naive / n,
        median_mase: mases.get(mases.len() / 2).copied().unwrap_or(f64::NAN),
        relative_mae: abs / abs_naive,
        better,
        worse,
        methods,
    }
}

/// Weekly demand, all series of the same weeks.
#[derive(Debug)]
pub struct Demand {
    /// The first week ([`forecast::week_of`]).
    pub first_week: i64,
    /// Per item.
    pub items: Vec<Vec<f64>>,
    /// The category concepts with demand, and theirs.
    pub categories: Vec<u32>,
    pub by_category: Vec<Vec<f64>>,
}

/// Weekly demand per item and per category (an item's event counts in each of its
/// categories), all over the same weeks. Demand is purchases; a data set without any
/// (the public ones) counts ratings instead, the signal MovieLens gives.
pub fn demand(s: &Shopping) -> Result<Demand> {
    let kind = s.demand_kind();
    let observations =
        s.history.iter().flatten().filter(|st| st.kind == kind).map(|st| (st.at, st.item));
    let (first, items) = forecast::weekly(observations.clone(), s.skus.len())?;
    let weeks = items.first().map_or(0, Vec::len);
    let mut categories: Vec<u32> = s
        .item_concepts
        .iter()
        .flatten()
        .copied()
        .filter(|&c| s.concepts[c as usize].starts_with("category:"))
        .collect();
    categories.sort_unstable();
    categories.dedup();
    let slot: HashMap<u32, usize> = categories.iter().enumerate().map(|(i, &c)| (c, i)).collect();
    let by_category = observations.flat_map(|(at, item)| {
        s.item_concepts[item as usize]
            .iter()
            .filter_map(|c| slot.get(c))
            .map(move |&k| (at, k as u32))
            .collect::<Vec<_>>()
    });
    let by_category = forecast::count_weeks(by_category, categories.len(), first, weeks);
    Ok(Demand { first_week: first, items, categories, by_category })
}

pub fn date(ms: i64) -> String {
    // Civil date from days since the epoch (Hinnant's algorithm).
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use shopgraph_core::product::{Category, Maker, MakerKind, NewProduct};
    use shopgraph_import::EventRecord;

    use super::*;

    const DAY: i64 = 86_400_000;

    fn book(sku: &str, author: &str, category: &str, year: i32) -> NewProduct {
        NewProduct {
            sku: sku.into(),
            title: format!("Book {sku}"),
            description: None,
            maker: Some(Maker {
                kind: MakerKind::Author,
                key: author.into(),
                name: author.to_uppercase(),
            }),
            publisher: None,
            year: Some(year),
            image_url: None,
            price_cents: 999,
            currency: "EUR".into(),
            stock: 3,
            category_keys: vec!["books".into(), category.into()],
            attributes: None,
            synthetic_fields: Vec::new(),
            source: "test".into(),
        }
    }

    fn event(user: &str, sku: &str, kind: EventKind, at: i64) -> EventRecord {
        EventRecord {
            key: format!("{user}-{sku}-{at}"),
            user: user.into(),
            product: Some(sku.into()),
            kind,
            value: None,
            payload: None,
            occurred_at: at,
        }
    }

    fn shop() -> Dataset {
        Dataset {
            categories: vec![
                Category { key: "books".into(), name: "Books".into(), parent_key: None },
                Category {
                    key: "books/horror".into(),
                    name: "Horror".into(),
                    parent_key: Some("books".into()),
                },
            ],
            products: vec![
                book("a", "king", "books/horror", 1986),
                book("b", "tolkien", "books", 1954),
            ],
            events: vec![
                event("u1", "b", EventKind::View, 5 * DAY),
                event("u1", "a", EventKind::Purchase, DAY),
                event("u1", "b", EventKind::Search, 2 * DAY), // not an interaction
                event("u2", "a", EventKind::Dismiss, DAY),
            ],
            ..Dataset::default()
        }
    }

    #[test]
    fn a_data_set_becomes_concepts_and_histories_in_time_order() {
        let s = Shopping::from_dataset(&shop());
        assert_eq!(s.skus, ["a", "b"]);
        let a: Vec<&str> =
            s.item_concepts[0].iter().map(|&c| s.concepts[c as usize].as_str()).collect();
        assert_eq!(a, ["maker:king", "category:books", "category:books/horror", "decade:1980s"]);
        assert_eq!(
            s.concept_names[s.item_category[0].unwrap() as usize],
            "Horror",
            "the deepest category"
        );
        assert_eq!(s.shoppers, ["u1", "u2"]);
        assert_eq!(
            s.history[0].iter().map(|st| st.at).collect::<Vec<_>>(),
            [DAY, 2 * DAY, 5 * DAY]
        );
        // Sessions hold interactions only, cut at pauses longer than the gap.
        assert_eq!(s.sessions(2 * DAY), [vec![0], vec![1]]);
        assert_eq!(s.sessions(10 * DAY), [vec![0, 1]]);
        // Steps at one time have no order between them.
        let mut same = shop();
        same.events.iter_mut().for_each(|e| e.occurred_at = DAY);
        let same = Shopping::from_dataset(&same);
        assert_eq!(same.sessions(DAY), [vec![0, 1]]);
        assert_eq!(same.sequences(DAY), [vec![0]]);
        // A dismissal counts against the item's concepts.
        let touched = s.touched();
        assert!(touched[1].iter().all(|&(_, w)| w < 0.0), "{:?}", touched[1]);
        assert_eq!(s.item_of_sku("b").unwrap(), 1);
        assert!(s.item_of_sku("zz").unwrap_err().to_string().contains("zz"));
    }

    #[test]
    fn stated_interests_join_the_profile_and_may_add_a_shopper() {
        let mut s = Shopping::from_dataset(&shop());
        s.add_interest("u1", None, "maker:tolkien".into(), 0.8);
        s.add_interest("u3", Some(UserId(3)), "category:books/horror".into(), 1.0);
        assert_eq!(s.shoppers.len(), 3);
        assert_eq!(s.shopper_ids[2], Some(UserId(3)));
        let tolkien = s.concept_of["maker:tolkien"];
        assert!(s.touched()[0].contains(&(tolkien, 2.4)), "interests weigh three times an event");
        assert_eq!(s.touched()[2].len(), 1);
    }

    #[test]
    fn demand_is_counted_by_product_and_by_each_category() {
        let monday = 957_139_200_000; // 2000-05-01
        let mut data = shop();
        data.events = (0..30)
            .flat_map(|w| {
                let at = monday + w * 7 * DAY;
                vec![
                    event("u1", "a", EventKind::Rating, at),
                    event("u2", "b", EventKind::Rating, at + DAY),
                    event("u3", "b", EventKind::View, at + DAY), // a view is no demand
                ]
            })
            .collect();
        let s = Shopping::from_dataset(&data);
        let Demand { first_week: first, items, categories, by_category: cats } =
            demand(&s).unwrap();
        assert_eq!(date(forecast::week_start(first)), "2000-05-01");
        assert_eq!(items[0].len(), 29, "the last week may be partial: left out");
        assert!(items.iter().all(|y| y.iter().all(|&v| v == 1.0)));
        let books =
            categories.iter().position(|&c| s.concepts[c as usize] == "category:books").unwrap();
        assert!(cats[books].iter().all(|&v| v == 2.0), "both books are in books");
        assert!(cats.iter().all(|y| y.len() == 29), "categories share the products' weeks");
        assert!(demand(&Shopping::default()).is_err());
        // Where there are purchases, only they are demand.
        data.events.push(event("u1", "a", EventKind::Purchase, monday + 10 * 7 * DAY));
        let s = Shopping::from_dataset(&data);
        assert_eq!(s.demand_kind(), EventKind::Purchase);
        let one = demand(&s).unwrap_err().to_string();
        assert!(one.contains("less than one whole week"), "one purchase, ratings aside: {one}");
        // A category's interests under the graph's own names count as concepts.
        let mut s = Shopping::from_dataset(&shop());
        s.add_interest("u1", None, "author:tolkien".into(), 1.0);
        let tolkien = s.concept_of["maker:tolkien"];
        assert!(s.touched_of(0).contains(&(tolkien, 3.0)));
    }
}
