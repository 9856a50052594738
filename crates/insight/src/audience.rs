//! Campaign audiences: the shoppers who meet every filter, each with the reasons they
//! were chosen, so marketing can check a list before it is used.
//!
//! Filters: membership of a segment; an interest at or above a weight; holding a
//! rule's antecedent without its consequent (the people a "bought together" offer is
//! for); activity since a time; and a predicted propensity to want an item, read from
//! the rules (the best confidence among rules whose antecedent the shopper holds and
//! whose consequent is the item).

use crate::{InsightError, Rule};

/// What the platform knows of one shopper, as audiences read it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shopper {
    pub id: u32,
    /// The shopper's segment in the current segmentation.
    pub segment: Option<u32>,
    /// (subject, weight) of the shopper's liked interests (`author:stephen king`).
    pub interests: Vec<(String, f64)>,
    /// Items the shopper interacted with, ascending.
    pub items: Vec<u32>,
    /// Time of the latest event (ms).
    pub last_active: Option<i64>,
}

/// One filter. An audience is the shoppers who pass all of its filters.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Segment(u32),
    /// An interest in `subject` of at least `min_weight`.
    Interest {
        subject: String,
        min_weight: f64,
    },
    /// Holds every item of the rule's antecedent and none of its consequent (which may
    /// be empty: holds these).
    Rule(Rule),
    /// Active at or after this time (ms).
    ActiveSince(i64),
    /// Propensity to want `item` of at least `min` (in [0, 1]): the best confidence
    /// among `rules` whose consequent contains the item and whose antecedent the
    /// shopper holds; a shopper who has the item already is left out.
    Propensity {
        item: u32,
        min: f64,
    },
}

/// Why a shopper was chosen: one per filter, in the filters' order.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    Segment(u32),
    Interest {
        subject: String,
        weight: f64,
    },
    Rule {
        holds: Vec<u32>,
        lacks: Vec<u32>,
        confidence: f64,
    },
    Active {
        last: i64,
    },
    /// The rule that gave the propensity.
    Propensity {
        item: u32,
        probability: f64,
        because: Vec<u32>,
    },
}

/// A chosen shopper.
#[derive(Clone, Debug, PartialEq)]
pub struct Selected {
    pub id: u32,
    pub reasons: Vec<Reason>,
}

/// Checks the filters: at least one, weights and propensities in range, segments
/// among `segments` (the current segmentation's), rule filters with items to hold.
pub fn check(filters: &[Filter], segments: &[u32]) -> Result<(), InsightError> {
    if filters.is_empty() {
        return Err(InsightError::Invalid("an audience needs at least one filter".into()));
    }
    for f in filters {
        match f {
            Filter::Segment(s) if !segments.contains(s) => {
                return Err(InsightError::Invalid(format!(
                    "segment {s} is not in the current segmentation (it has {segments:?})"
                )));
            }
            Filter::Interest { subject, min_weight } => {
                if subject.trim().is_empty() {
                    return Err(InsightError::Invalid("an interest filter needs a subject".into()));
                }
                if !(min_weight.is_finite() && *min_weight >= 0.0) {
                    return Err(InsightError::OutOfRange {
                        name: "min_weight",
                        range: "a finite number ≥ 0",
                        value: *min_weight,
                    });
                }
            }
            Filter::Rule(r) if r.antecedent.is_empty() => {
                return Err(InsightError::Invalid(
                    "a holds filter needs at least one item to hold".into(),
                ));
            }
            Filter::Propensity { min, .. } if !(0.0..=1.0).contains(min) => {
                return Err(InsightError::OutOfRange {
                    name: "min_propensity",
                    range: "in [0, 1]",
                    value: *min,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// The shoppers who pass every filter, in the input's order. `rules` are what
/// propensities are read from.
pub fn select(
    shoppers: &[Shopper],
    filters: &[Filter],
    segments: &[u32],
    rules: &[Rule],
) -> Result<Vec<Selected>, InsightError> {
    check(filters, segments)?;
    let mut out = Vec::new();
    'shoppers: for s in shoppers {
        let mut reasons = Vec::with_capacity(filters.len());
        for f in filters {
            match passes(s, f, rules) {
                Some(r) => reasons.push(r),
                None => continue 'shoppers,
            }
        }
        out.push(Selected { id: s.id, reasons });
    }
    Ok(out)
}

fn holds(items: &[u32], wanted: &[u32]) -> bool {
    wanted.iter().all(|i| items.binary_search(i).is_ok())
}

fn passes(s: &Shopper, f: &Filter, rules: &[Rule]) -> Option<Reason> {
    match f {
        Filter::Segment(id) => (s.segment == Some(*id)).then_some(Reason::Segment(*id)),
        Filter::Interest { subject, min_weight } => s
            .interests
            .iter()
            .filter(|(subj, w)| subj == subject && *w >= *min_weight)
            .map(|(subj, w)| Reason::Interest { subject: subj.clone(), weight: *w })
            .next(),
        Filter::Rule(r) => (holds(&s.items, &r.antecedent)
            && !r.consequent.iter().any(|i| s.items.binary_search(i).is_ok()))
        .then(|| Reason::Rule {
            holds: r.antecedent.clone(),
            lacks: r.consequent.clone(),
            confidence: r.confidence,
        }),
        Filter::ActiveSince(t) => {
            s.last_active.filter(|last| last >= t).map(|last| Reason::Active { last })
        }
        Filter::Propensity { item, min } => {
            if s.items.binary_search(item).is_ok() {
                return None; // already has it
            }
            rules
                .iter()
                .filter(|r| r.consequent.contains(item) && holds(&s.items, &r.antecedent))
                .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
                .filter(|r| r.confidence >= *min)
                .map(|r| Reason::Propensity {
                    item: *item,
                    probability: r.confidence,
                    because: r.antecedent.clone(),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(a: &[u32], c: &[u32], confidence: f64) -> Rule {
        Rule { antecedent: a.to_vec(), consequent: c.to_vec(), support: 0.1, confidence, lift: 2.0 }
    }

    fn shoppers() -> Vec<Shopper> {
        vec![
            Shopper {
                id: 0,
                segment: Some(1),
                interests: vec![("author:king".into(), 0.9)],
                items: vec![1, 2],
                last_active: Some(1000),
            },
            Shopper {
                id: 1,
                segment: Some(1),
                interests: vec![("author:king".into(), 0.3)],
                items: vec![1, 2, 3],
                last_active: Some(10),
            },
            Shopper {
                id: 2,
                segment: Some(2),
                interests: vec![],
                items: vec![1],
                last_active: None,
            },
            Shopper { id: 3, segment: None, ..Default::default() },
        ]
    }

    fn ids(sel: &[Selected]) -> Vec<u32> {
        sel.iter().map(|s| s.id).collect()
    }

    #[test]
    fn each_filter_is_honoured_with_its_reason() {
        let all = shoppers();
        let seg = [1, 2];
        let pick = |f: Vec<Filter>| {
            select(&all, &f, &seg, &[rule(&[1], &[3], 0.4), rule(&[1, 2], &[3], 0.6)]).unwrap()
        };
        assert_eq!(ids(&pick(vec![Filter::Segment(1)])), [0, 1]);
        let by_interest =
            pick(vec![Filter::Interest { subject: "author:king".into(), min_weight: 0.5 }]);
        assert_eq!(ids(&by_interest), [0]);
        assert_eq!(
            by_interest[0].reasons,
            [Reason::Interest { subject: "author:king".into(), weight: 0.9 }]
        );
        assert_eq!(
            ids(&pick(vec![Filter::Rule(rule(&[1], &[3], 0.4))])),
            [0, 2],
            "1 has 3 already"
        );
        assert_eq!(ids(&pick(vec![Filter::ActiveSince(500)])), [0]);
        let likely = pick(vec![Filter::Propensity { item: 3, min: 0.5 }]);
        assert_eq!(ids(&likely), [0], "2 holds only the weaker rule; 1 has the item");
        assert_eq!(
            likely[0].reasons,
            [Reason::Propensity { item: 3, probability: 0.6, because: vec![1, 2] }]
        );
        // All filters at once: only who passes every one, with a reason for each.
        let both = pick(vec![
            Filter::Segment(1),
            Filter::ActiveSince(500),
            Filter::Propensity { item: 3, min: 0.1 },
        ]);
        assert_eq!(ids(&both), [0]);
        assert_eq!(both[0].reasons.len(), 3);
    }

    #[test]
    fn bad_filters_are_refused() {
        let all = shoppers();
        let err = select(&all, &[Filter::Segment(9)], &[1, 2], &[]).unwrap_err();
        assert!(err.to_string().contains("segment 9"), "{err}");
        assert!(select(&all, &[], &[1], &[]).is_err());
        let nan = Filter::Interest { subject: "x".into(), min_weight: f64::NAN };
        assert!(matches!(select(&all, &[nan], &[], &[]), Err(InsightError::OutOfRange { .. })));
        let p = Filter::Propensity { item: 1, min: 1.5 };
        assert!(matches!(select(&all, &[p], &[], &[]), Err(InsightError::OutOfRange { .. })));
        assert!(select(&all, &[Filter::Rule(rule(&[], &[1], 0.5))], &[], &[]).is_err());
        // Holding alone, without a side to lack.
        let holders = select(&all, &[Filter::Rule(rule(&[1, 2], &[], 0.0))], &[], &[]).unwrap();
        assert_eq!(ids(&holders), [0, 1]);
    }
}
