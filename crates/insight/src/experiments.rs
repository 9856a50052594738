//! Experiments: traffic split between strategies by a stable hash of the shopper, and
//! what each arm's recommendations earned.
//!
//! A shopper's arm depends only on the experiment's name and the shopper's id, so it
//! needs no storage, survives restarts and is the same on every replica. Outcomes are
//! read back from behaviour events: an impression is one recommended item shown to one
//! shopper; it was clicked (or bought) when that shopper clicked (bought) that item
//! within the attribution window after it was first shown. Click-through and conversion
//! are impressions' shares, each with a Wilson score interval, and arms are compared by
//! the normal interval of the difference of two proportions. Impressions of one shopper
//! are not independent, so with few shoppers the intervals are too narrow: read them
//! beside the shopper counts.

use rustc_hash::FxHashMap;

use crate::InsightError;

/// One arm: a strategy's name and its share of traffic (in weights).
#[derive(Clone, Debug, PartialEq)]
pub struct Arm {
    pub name: String,
    pub weight: u32,
}

/// An experiment's arms.
#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    pub name: String,
    pub arms: Vec<Arm>,
}

impl Experiment {
    /// Refuses fewer than two arms, zero weights and repeated arm names.
    pub fn new(name: &str, arms: Vec<Arm>) -> Result<Experiment, InsightError> {
        if name.trim().is_empty() {
            return Err(InsightError::Invalid("an experiment needs a name".into()));
        }
        if arms.len() < 2 {
            return Err(InsightError::Invalid(format!(
                "experiment {name} needs at least two arms, got {}",
                arms.len()
            )));
        }
        for (i, arm) in arms.iter().enumerate() {
            if arm.weight == 0 {
                return Err(InsightError::Invalid(format!("arm {} has weight 0", arm.name)));
            }
            if arms[..i].iter().any(|a| a.name == arm.name) {
                return Err(InsightError::Invalid(format!("arm {} is named twice", arm.name)));
            }
        }
        Ok(Experiment { name: name.to_owned(), arms })
    }

    /// The arm (index) a shopper is in: the same for the same experiment and shopper.
    pub fn arm_of(&self, shopper: &str) -> usize {
        let total: u64 = self.arms.iter().map(|a| u64::from(a.weight)).sum();
        let mut h = fnv1a(self.name.as_bytes(), 0xcbf2_9ce4_8422_2325);
        h = fnv1a(&[0], h);
        h = fnv1a(shopper.as_bytes(), h);
        // A final mix, so that nearby ids spread over the whole range.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        let mut point = ((u128::from(h) * u128::from(total)) >> 64) as u64;
        for (i, arm) in self.arms.iter().enumerate() {
            if point < u64::from(arm.weight) {
                return i;
            }
            point -= u64::from(arm.weight);
        }
        self.arms.len() - 1
    }
}

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What happened to one recommended item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    Shown,
    Click,
    Purchase,
}

/// One shopper's impressions and what came of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub shown: u64,
    pub clicked: u64,
    pub bought: u64,
}

impl std::ops::AddAssign for Outcome {
    fn add_assign(&mut self, o: Outcome) {
        self.shown += o.shown;
        self.clicked += o.clicked;
        self.bought += o.bought;
    }
}

/// Impressions and their outcomes per shopper from `(shopper, item, touch, time ms)`
/// events in any order. A click or purchase counts for an impression when it came
/// after the item was first shown to that shopper and within `window_ms` of it.
pub fn outcomes(events: &[(u32, u32, Touch, i64)], window_ms: i64) -> FxHashMap<u32, Outcome> {
    let mut first_shown: FxHashMap<(u32, u32), i64> = FxHashMap::default();
    for &(user, item, touch, at) in events {
        if touch == Touch::Shown {
            let t = first_shown.entry((user, item)).or_insert(at);
            *t = (*t).min(at);
        }
    }
    // Per impression: (clicked, bought).
    let mut after: FxHashMap<(u32, u32), (bool, bool)> = FxHashMap::default();
    for &(user, item, touch, at) in events {
        let Some(&shown) = first_shown.get(&(user, item)) else { continue };
        if at < shown || at - shown > window_ms {
            continue;
        }
        let hit = after.entry((user, item)).or_default();
        match touch {
            Touch::Click => hit.0 = true,
            Touch::Purchase => hit.1 = true,
            Touch::Shown => {}
        }
    }
    let mut per_user: FxHashMap<u32, Outcome> = FxHashMap::default();
    for &(user, item) in first_shown.keys() {
        let o = per_user.entry(user).or_default();
        o.shown += 1;
        if let Some(&(clicked, bought)) = after.get(&(user, item)) {
            o.clicked += u64::from(clicked);
            o.bought += u64::from(bought);
        }
    }
    per_user
}

/// A share with its confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `successes` in `trials` (Wilson, 1927): unlike the
/// normal interval it stays inside [0, 1] and behaves at rates near 0, where
/// click-through lives. No trials: the rate is 0 and the interval all of [0, 1].
pub fn wilson(successes: u64, trials: u64, z: f64) -> Interval {
    if trials == 0 {
        return Interval { rate: 0.0, low: 0.0, high: 1.0 };
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Interval { rate: p, low: (centre - half).max(0.0), high: (centre + half).min(1.0) }
}

/// The difference `b − a` of two shares with its normal (Wald) interval; all of
/// [-1, 1] when either side had no trials.
pub fn difference(a: (u64, u64), b: (u64, u64), z: f64) -> Interval {
    let share = |(s, n): (u64, u64)| if n == 0 { 0.0 } else { s as f64 / n as f64 };
    let var = |(s, n): (u64, u64)| {
        if n == 0 {
            0.0
        } else {
            let p = share((s, n));
            p * (1.0 - p) / n as f64
        }
    };
    if a.1 == 0 || b.1 == 0 {
        // An arm without trials says nothing: every difference is possible.
        return Interval { rate: 0.0, low: -1.0, high: 1.0 };
    }
    let d = share(b) - share(a);
    let half = z * (var(a) + var(b)).sqrt();
    Interval { rate: d, low: d - half, high: d + half }
}

/// One arm's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct ArmReport {
    pub arm: String,
    pub shoppers: usize,
    pub outcome: Outcome,
    pub ctr: Interval,
    pub conversion: Interval,
    /// Click-through minus the first arm's (the control's), with its interval.
    pub ctr_lift: Option<Interval>,
}

/// Sums the shoppers' outcomes by arm. `shoppers` pairs each shopper's id (as the
/// hash reads it) with their outcome.
pub fn report<'a>(
    experiment: &Experiment,
    shoppers: impl IntoIterator<Item = (&'a str, Outcome)>,
) -> Vec<ArmReport> {
    let mut sums = vec![(0usize, Outcome::default()); experiment.arms.len()];
    for (id, o) in shoppers {
        let s = &mut sums[experiment.arm_of(id)];
        s.0 += 1;
        s.1 += o;
    }
    let control = sums[0].1;
    sums.iter()
        .zip(&experiment.arms)
        .enumerate()
        .map(|(i, ((n, o), arm))| ArmReport {
            arm: arm.name.clone(),
            shoppers: *n,
            outcome: *o,
            ctr: wilson(o.clicked, o.shown, Z95),
            conversion: wilson(o.bought, o.shown, Z95),
            ctr_lift: (i > 0)
                .then(|| difference((control.clicked, control.shown), (o.clicked, o.shown), Z95)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ab() -> Experiment {
        Experiment::new(
            "ranker-2026-12",
            vec![Arm { name: "graph".into(), weight: 1 }, Arm { name: "fusion".into(), weight: 1 }],
        )
        .unwrap()
    }

    #[test]
    fn arms_are_stable_and_split_by_weight() {
        let e = ab();
        let ids: Vec<String> = (0..20_000).map(|i| format!("user-{i}")).collect();
        let arms: Vec<usize> = ids.iter().map(|id| e.arm_of(id)).collect();
        assert_eq!(arms, ids.iter().map(|id| e.arm_of(id)).collect::<Vec<_>>());
        let ones = arms.iter().filter(|&&a| a == 1).count() as f64 / ids.len() as f64;
        assert!((ones - 0.5).abs() < 0.02, "{ones}");
        // Another experiment splits the same shoppers independently.
        let other = Experiment { name: "prompts-v3".into(), ..e.clone() };
        let same = ids.iter().filter(|id| other.arm_of(id) == e.arm_of(id)).count() as f64;
        assert!((same / ids.len() as f64 - 0.5).abs() < 0.02);
        // Weights 1:3.
        let skew = Experiment::new(
            "skew",
            vec![Arm { name: "a".into(), weight: 1 }, Arm { name: "b".into(), weight: 3 }],
        )
        .unwrap();
        let b = ids.iter().filter(|id| skew.arm_of(id) == 1).count() as f64 / ids.len() as f64;
        assert!((b - 0.75).abs() < 0.02, "{b}");
    }

    #[test]
    fn clicks_and_purchases_count_for_what_was_shown_within_the_window() {
        let h = 3_600_000;
        let events = vec![
            (1, 10, Touch::Shown, 0),
            (1, 10, Touch::Click, h),
            (1, 10, Touch::Click, 2 * h), // a second click on one impression counts once
            (1, 11, Touch::Shown, 0),
            (1, 11, Touch::Purchase, 30 * h), // outside a day
            (1, 12, Touch::Click, h),         // never shown
            (2, 10, Touch::Click, 0),
            (2, 10, Touch::Shown, h), // the click came before the impression
            (2, 10, Touch::Shown, 2 * h),
            (2, 13, Touch::Shown, 0),
            (2, 13, Touch::Purchase, h),
        ];
        let o = outcomes(&events, 24 * h);
        assert_eq!(o[&1], Outcome { shown: 2, clicked: 1, bought: 0 });
        assert_eq!(o[&2], Outcome { shown: 2, clicked: 0, bought: 1 });
        assert_eq!(o.len(), 2);
    }

    #[test]
    fn wilson_intervals_match_published_values() {
        // Wilson (1927) via Newcombe (1998), example: 81 of 263, 95%: 0.2553 to 0.3662.
        let i = wilson(81, 263, Z95);
        assert!((i.low - 0.2553).abs() < 5e-4 && (i.high - 0.3662).abs() < 5e-4, "{i:?}");
        let zero = wilson(0, 10, Z95);
        assert_eq!(zero.low, 0.0);
        assert!((zero.high - 0.2775).abs() < 5e-4, "{zero:?}");
        assert_eq!(wilson(0, 0, Z95), Interval { rate: 0.0, low: 0.0, high: 1.0 });
    }

    #[test]
    fn a_report_sums_by_arm_and_compares_with_the_control() {
        let e = ab();
        let ids: Vec<String> = (0..1000).map(|i| format!("u{i}")).collect();
        let shoppers = ids.iter().map(|id| {
            let clicked = if e.arm_of(id) == 1 { 2 } else { 1 };
            (id.as_str(), Outcome { shown: 10, clicked, bought: 1 })
        });
        let r = report(&e, shoppers);
        assert_eq!(r[0].shoppers + r[1].shoppers, 1000);
        assert!((r[0].ctr.rate - 0.1).abs() < 1e-12 && (r[1].ctr.rate - 0.2).abs() < 1e-12);
        let lift = r[1].ctr_lift.unwrap();
        assert!(lift.low > 0.0 && (lift.rate - 0.1).abs() < 1e-12, "{lift:?}");
        assert!(r[0].ctr_lift.is_none());
        assert_eq!(difference((0, 0), (5, 10), Z95), Interval { rate: 0.0, low: -1.0, high: 1.0 });
    }

    #[test]
    fn bad_experiments_are_refused() {
        let arm = |n: &str, w| Arm { name: n.into(), weight: w };
        assert!(Experiment::new("x", vec![arm("a", 1)]).is_err());
        assert!(Experiment::new("x", vec![arm("a", 1), arm("b", 0)]).is_err());
        assert!(Experiment::new("x", vec![arm("a", 1), arm("a", 1)]).is_err());
        assert!(Experiment::new(" ", vec![arm("a", 1), arm("b", 1)]).is_err());
    }
}
