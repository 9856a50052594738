//! Sequences: what shoppers usually look at next.
//!
//! A first-order Markov chain over the shoppers' histories: every step from one item
//! (or category) to a different one is counted, and the next steps from `a` are ranked
//! by how often they followed `a`. The same counts answer "customers who looked at this
//! usually look at … next" for items and for categories (map items to their category
//! before counting; repeats collapse).

use rustc_hash::FxHashMap;

use crate::InsightError;

/// One likely next step.
#[derive(Clone, Debug, PartialEq)]
pub struct Next {
    pub to: u32,
    /// How many times a shopper went from the item to this one.
    pub count: u32,
    /// `count` over every step out of the item: P(next = to | now = item).
    pub probability: f64,
}

/// Counted transitions.
#[derive(Clone, Debug, Default)]
pub struct Transitions {
    /// Per origin: its destinations, most frequent first (ties by index), and the
    /// number of steps out of it.
    out: FxHashMap<u32, (Vec<(u32, u32)>, u32)>,
    steps: u64,
}

impl Transitions {
    /// Counts the steps in `histories` (each in time order). Consecutive repeats of one
    /// item are one visit. Destinations seen fewer than `min_count` times from an origin
    /// are dropped (the origin's total keeps them, so probabilities stay honest).
    pub fn count(histories: &[Vec<u32>], min_count: u32) -> Result<Transitions, InsightError> {
        if histories.iter().all(|h| h.len() < 2) {
            return Err(InsightError::Empty("no history has two steps"));
        }
        let mut pairs: FxHashMap<(u32, u32), u32> = FxHashMap::default();
        let mut totals: FxHashMap<u32, u32> = FxHashMap::default();
        let mut steps = 0u64;
        for history in histories {
            for w in history.windows(2) {
                if w[0] != w[1] {
                    *pairs.entry((w[0], w[1])).or_default() += 1;
                    *totals.entry(w[0]).or_default() += 1;
                    steps += 1;
                }
            }
        }
        let mut out: FxHashMap<u32, (Vec<(u32, u32)>, u32)> = FxHashMap::default();
        for ((from, to), count) in pairs {
            if count >= min_count.max(1) {
                out.entry(from).or_insert_with(|| (Vec::new(), totals[&from])).0.push((to, count));
            }
        }
        for (list, _) in out.values_mut() {
            list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        }
        Ok(Transitions { out, steps })
    }

    /// The `n` likeliest steps after `from` (none when it was never left).
    pub fn next(&self, from: u32, n: usize) -> Vec<Next> {
        let Some((list, total)) = self.out.get(&from) else { return Vec::new() };
        list.iter()
            .take(n)
            .map(|&(to, count)| Next {
                to,
                count,
                probability: f64::from(count) / f64::from(*total),
            })
            .collect()
    }

    /// The `n` most frequent steps overall, as (from, next).
    pub fn strongest(&self, n: usize) -> Vec<(u32, Next)> {
        let mut all: Vec<(u32, Next)> = self
            .out
            .iter()
            .flat_map(|(&from, (list, total))| {
                list.iter().map(move |&(to, count)| {
                    (from, Next { to, count, probability: f64::from(count) / f64::from(*total) })
                })
            })
            .collect();
        all.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)).then(a.1.to.cmp(&b.1.to)));
        all.truncate(n);
        all
    }

    /// Steps counted (repeats excluded).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Origins with at least one kept destination.
    pub fn origins(&self) -> usize {
        self.out.len()
    }
}

/// Maps each item of each history through `category` (items without one are
/// skipped) and collapses consecutive repeats: the histories of categories.
pub fn through(histories: &[Vec<u32>], category: impl Fn(u32) -> Option<u32>) -> Vec<Vec<u32>> {
    histories
        .iter()
        .map(|h| {
            let mut out: Vec<u32> = Vec::new();
            for c in h.iter().filter_map(|&i| category(i)) {
                if out.last() != Some(&c) {
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

/// Hit rate at `n` of predicting each history's last step from the one before it,
/// by the chain counted on the other steps (`fit`) against the most visited items
/// (`popular`, most first): (chain, popularity, histories judged).
pub fn hit_rate(
    fit: &Transitions,
    held_out: &[(u32, u32)],
    popular: &[u32],
    n: usize,
) -> (f64, f64, usize) {
    let (mut chain, mut pop) = (0usize, 0usize);
    for &(from, to) in held_out {
        if fit.next(from, n).iter().any(|x| x.to == to) {
            chain += 1;
        }
        if popular.iter().filter(|&&p| p != from).take(n).any(|&p| p == to) {
            pop += 1;
        }
    }
    let judged = held_out.len().max(1) as f64;
    (chain as f64 / judged, pop as f64 / judged, held_out.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_steps_are_counted_and_ranked() {
        let histories = vec![vec![1, 2, 3], vec![1, 2, 2, 4], vec![1, 3], vec![5]];
        let t = Transitions::count(&histories, 1).unwrap();
        assert_eq!(t.steps(), 5, "1→2, 2→3, 1→2, 2→4, 1→3; 2→2 is a repeat");
        let after_1 = t.next(1, 5);
        assert_eq!(after_1.iter().map(|x| (x.to, x.count)).collect::<Vec<_>>(), [(2, 2), (3, 1)]);
        assert!((after_1[0].probability - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(t.next(2, 5).iter().map(|x| x.to).collect::<Vec<_>>(), [3, 4]);
        assert!(t.next(5, 5).is_empty(), "5 was never left");
        assert_eq!(t.strongest(1)[0].0, 1);
        // A minimum count drops rare steps but keeps the origin's total.
        let t = Transitions::count(&histories, 2).unwrap();
        assert_eq!(t.next(1, 5).len(), 1);
        assert!((t.next(1, 5)[0].probability - 2.0 / 3.0).abs() < 1e-12);
        assert!(t.next(2, 5).is_empty());
    }

    #[test]
    fn categories_collapse_repeats() {
        let category = |i: u32| if i == 9 { None } else { Some(i / 10) };
        let h = through(&[vec![11, 12, 9, 21, 13]], category);
        assert_eq!(h, [vec![1, 2, 1]]);
    }

    #[test]
    fn the_chain_predicts_what_it_saw() {
        let t = Transitions::count(&[vec![1, 2], vec![1, 2], vec![3, 4]], 1).unwrap();
        let (chain, pop, n) = hit_rate(&t, &[(1, 2), (3, 4), (5, 6)], &[7, 8], 1);
        assert_eq!(n, 3);
        assert!((chain - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(pop, 0.0);
    }

    #[test]
    fn histories_without_two_steps_are_refused() {
        let err = Transitions::count(&[vec![1], vec![]], 1).unwrap_err();
        assert!(matches!(err, InsightError::Empty(_)));
        assert!(Transitions::count(&[], 1).is_err());
    }
}
