//! Association rules: frequent itemsets by FP-growth (Han, Pei & Yin, 2000) and the
//! rules `A → B` they give, each with its support, confidence and lift.
//!
//! A basket is a set of items (an order, or a shopper's session); an item repeated in
//! one basket counts once. An itemset is frequent when at least `min_support` of the
//! baskets hold it. FP-growth compresses the baskets into a prefix tree ordered by item
//! frequency and mines it recursively through conditional trees, so it never counts a
//! candidate that does not occur, as Apriori does.

use rustc_hash::FxHashMap;

use crate::InsightError;

/// What counts as a rule worth reporting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RuleParams {
    /// The share of baskets an itemset must be in, in (0, 1].
    pub min_support: f64,
    /// The share of baskets with the antecedent that also hold the consequent, in [0, 1].
    pub min_confidence: f64,
    /// How much more often the consequent comes with the antecedent than alone, ≥ 0
    /// (1: independent).
    pub min_lift: f64,
    /// The most items in one itemset, 2 to 8 (a rule needs two; beyond 8 the rules of
    /// one itemset number in the hundreds).
    pub max_len: usize,
}

impl Default for RuleParams {
    fn default() -> RuleParams {
        RuleParams { min_support: 0.01, min_confidence: 0.2, min_lift: 1.0, max_len: 3 }
    }
}

impl RuleParams {
    /// Refuses thresholds outside their ranges (NaN included).
    pub fn check(&self) -> Result<(), InsightError> {
        let out = |name, range, value| Err(InsightError::OutOfRange { name, range, value });
        if !(self.min_support > 0.0 && self.min_support <= 1.0) {
            return out("min_support", "in (0, 1]", self.min_support);
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return out("min_confidence", "in [0, 1]", self.min_confidence);
        }
        if !(self.min_lift >= 0.0 && self.min_lift.is_finite()) {
            return out("min_lift", "a finite number ≥ 0", self.min_lift);
        }
        if !(2..=8).contains(&self.max_len) {
            return out("max_len", "2 to 8", self.max_len as f64);
        }
        Ok(())
    }
}

/// A frequent itemset: its items (ascending) and how many baskets hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Itemset {
    pub items: Vec<u32>,
    pub count: u32,
}

/// A rule `antecedent → consequent` (each ascending, disjoint).
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub antecedent: Vec<u32>,
    pub consequent: Vec<u32>,
    /// Share of baskets holding both sides.
    pub support: f64,
    /// Share of baskets with the antecedent that hold the consequent.
    pub confidence: f64,
    /// Confidence over the consequent's own share of baskets.
    pub lift: f64,
}

/// The result of one mining run.
#[derive(Clone, Debug)]
pub struct Rules {
    pub baskets: usize,
    pub itemsets: Vec<Itemset>,
    /// Strongest first: by lift, then confidence, then support.
    pub rules: Vec<Rule>,
}

/// Frequent itemsets and rules over `baskets`. Baskets of one item count towards
/// supports but can give no rule. Empty input, or input with no item at all, is
/// refused, as are thresholds out of range.
pub fn mine(baskets: &[Vec<u32>], params: &RuleParams) -> Result<Rules, InsightError> {
    params.check()?;
    if baskets.is_empty() {
        return Err(InsightError::Empty("no baskets"));
    }
    if baskets.iter().all(Vec::is_empty) {
        return Err(InsightError::Empty("every basket is empty"));
    }
    let n = baskets.len();
    // The smallest count that reaches the share, never below one basket.
    let min_count = ((params.min_support * n as f64) - 1e-9).ceil().max(1.0) as u32;
    let itemsets = frequent_itemsets(baskets, min_count, params.max_len);
    let count_of: FxHashMap<&[u32], u32> =
        itemsets.iter().map(|s| (s.items.as_slice(), s.count)).collect();
    let mut rules = Vec::new();
    for set in itemsets.iter().filter(|s| s.items.len() >= 2) {
        let k = set.items.len();
        // Every split into two non-empty sides: the bits of `mask` pick the antecedent.
        for mask in 1..(1u32 << k) - 1 {
            let (mut antecedent, mut consequent) = (Vec::new(), Vec::new());
            for (bit, &item) in set.items.iter().enumerate() {
                if mask & (1 << bit) != 0 {
                    antecedent.push(item);
                } else {
                    consequent.push(item);
                }
            }
            // Subsets of a frequent itemset are frequent, so both are known.
            let a = f64::from(count_of[antecedent.as_slice()]);
            let c = f64::from(count_of[consequent.as_slice()]);
            let both = f64::from(set.count);
            let confidence = both / a;
            // As one quotient of counts, so that A → B and B → A get the very same lift.
            let lift = both * n as f64 / (a * c);
            if confidence + 1e-12 >= params.min_confidence && lift + 1e-12 >= params.min_lift {
                rules.push(Rule {
                    antecedent,
                    consequent,
                    support: both / n as f64,
                    confidence,
                    lift,
                });
            }
        }
    }
    rules.sort_by(|x, y| {
        y.lift
            .total_cmp(&x.lift)
            .then(y.confidence.total_cmp(&x.confidence))
            .then(y.support.total_cmp(&x.support))
            .then_with(|| (&x.antecedent, &x.consequent).cmp(&(&y.antecedent, &y.consequent)))
    });
    Ok(Rules { baskets: n, itemsets, rules })
}

/// Every itemset of at most `max_len` items held by at least `min_count` baskets,
/// each with its count, in ascending order of items.
pub fn frequent_itemsets(baskets: &[Vec<u32>], min_count: u32, max_len: usize) -> Vec<Itemset> {
    let weighted: Vec<(Vec<u32>, u32)> = baskets
        .iter()
        .map(|b| {
            let mut items = b.clone();
            items.sort_unstable();
            items.dedup();
            (items, 1)
        })
        .collect();
    let tree = Tree::build(&weighted, min_count.max(1));
    let mut out = Vec::new();
    let mut suffix = Vec::new();
    tree.mine(min_count.max(1), max_len, &mut suffix, &mut out);
    for set in &mut out {
        set.items.sort_unstable();
    }
    out.sort_by(|a, b| a.items.len().cmp(&b.items.len()).then_with(|| a.items.cmp(&b.items)));
    out
}

const ROOT: usize = 0;

struct Node {
    item: u32,
    count: u32,
    parent: usize,
    /// (item, node): few below the first levels, so a list beats a hash map.
    children: Vec<(u32, usize)>,
}

/// An FP-tree: the baskets' frequent items as paths from the root, most frequent first,
/// so that baskets sharing their commonest items share a path.
struct Tree {
    nodes: Vec<Node>,
    /// Each frequent item, least frequent first, with its total count and its nodes.
    items: Vec<(u32, u32, Vec<usize>)>,
}

impl Tree {
    /// Builds the tree over weighted transactions, keeping items of total weight
    /// `min_count` or more.
    fn build(transactions: &[(Vec<u32>, u32)], min_count: u32) -> Tree {
        let mut totals: FxHashMap<u32, u32> = FxHashMap::default();
        for (items, weight) in transactions {
            for &item in items {
                *totals.entry(item).or_default() += weight;
            }
        }
        let mut frequent: Vec<(u32, u32)> =
            totals.into_iter().filter(|&(_, count)| count >= min_count).collect();
        // The tree's order: most frequent first, ties by item, so a run is deterministic.
        frequent.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let rank: FxHashMap<u32, usize> =
            frequent.iter().enumerate().map(|(r, &(item, _))| (item, r)).collect();
        let mut nodes = vec![Node { item: u32::MAX, count: 0, parent: ROOT, children: Vec::new() }];
        // The root has a child for most items: found by hash, the rest by a scan.
        let mut under_root: FxHashMap<u32, usize> = FxHashMap::default();
        let mut nodes_of: Vec<Vec<usize>> = vec![Vec::new(); frequent.len()];
        let mut path = Vec::new();
        for (items, weight) in transactions {
            path.clear();
            path.extend(items.iter().filter_map(|i| rank.get(i).map(|&r| (r, *i))));
            path.sort_unstable();
            let mut at = ROOT;
            for &(r, item) in &path {
                let found = if at == ROOT {
                    under_root.get(&item).copied()
                } else {
                    nodes[at].children.iter().find(|&&(i, _)| i == item).map(|&(_, n)| n)
                };
                at = match found {
                    Some(child) => child,
                    None => {
                        let child = nodes.len();
                        nodes.push(Node { item, count: 0, parent: at, children: Vec::new() });
                        if at == ROOT {
                            under_root.insert(item, child);
                        } else {
                            nodes[at].children.push((item, child));
                        }
                        nodes_of[r].push(child);
                        child
                    }
                };
                nodes[at].count += weight;
            }
        }
        let items = frequent
            .iter()
            .zip(nodes_of)
            .rev()
            .map(|(&(item, count), nodes)| (item, count, nodes))
            .collect();
        Tree { nodes, items }
    }

    /// Appends every frequent itemset that ends in `suffix` (plus at least one of this
    /// tree's items) to `out`.
    fn mine(&self, min_count: u32, max_len: usize, suffix: &mut Vec<u32>, out: &mut Vec<Itemset>) {
        for (item, count, nodes) in &self.items {
            suffix.push(*item);
            out.push(Itemset { items: suffix.clone(), count: *count });
            if suffix.len() + 1 == max_len {
                // The last level: the itemsets one item longer need only their counts,
                // summed along each node's path, not a tree of their own.
                let mut totals: FxHashMap<u32, u32> = FxHashMap::default();
                for &node in nodes {
                    let weight = self.nodes[node].count;
                    let mut at = self.nodes[node].parent;
                    while at != ROOT {
                        *totals.entry(self.nodes[at].item).or_default() += weight;
                        at = self.nodes[at].parent;
                    }
                }
                for (other, total) in totals {
                    if total >= min_count {
                        suffix.push(other);
                        out.push(Itemset { items: suffix.clone(), count: total });
                        suffix.pop();
                    }
                }
            } else if suffix.len() < max_len {
                // The conditional pattern base: each node's path up to the root,
                // weighted by the node's count.
                let base: Vec<(Vec<u32>, u32)> = nodes
                    .iter()
                    .map(|&node| {
                        let mut path = Vec::new();
                        let mut at = self.nodes[node].parent;
                        while at != ROOT {
                            path.push(self.nodes[at].item);
                            at = self.nodes[at].parent;
                        }
                        (path, self.nodes[node].count)
                    })
                    .filter(|(path, _)| !path.is_empty())
                    .collect();
                if !base.is_empty() {
                    let conditional = Tree::build(&base, min_count);
                    if !conditional.items.is_empty() {
                        conditional.mine(min_count, max_len, suffix, out);
                    }
                }
            }
            suffix.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Every itemset of at most `max_len` items counted by listing each basket's subsets.
    fn brute_force(baskets: &[Vec<u32>], min_count: u32, max_len: usize) -> Vec<Itemset> {
        let mut counts: BTreeMap<Vec<u32>, u32> = BTreeMap::new();
        for basket in baskets {
            let mut items = basket.clone();
            items.sort_unstable();
            items.dedup();
            for mask in 1u64..(1 << items.len()) {
                let set: Vec<u32> = (0..items.len())
                    .filter(|bit| mask & (1 << bit) != 0)
                    .map(|bit| items[bit])
                    .collect();
                if set.len() <= max_len {
                    *counts.entry(set).or_default() += 1;
                }
            }
        }
        let mut out: Vec<Itemset> = counts
            .into_iter()
            .filter(|&(_, count)| count >= min_count)
            .map(|(items, count)| Itemset { items, count })
            .collect();
        out.sort_by(|a, b| a.items.len().cmp(&b.items.len()).then_with(|| a.items.cmp(&b.items)));
        out
    }

    fn shop() -> Vec<Vec<u32>> {
        // 1 bread, 2 milk, 3 butter, 4 beer, 5 nappies
        vec![
            vec![1, 2, 3],
            vec![1, 2],
            vec![1, 3],
            vec![4, 5],
            vec![4, 5, 2],
            vec![1, 2, 3, 2],
            vec![5],
            vec![1, 3],
        ]
    }

    #[test]
    fn itemsets_and_rules_on_a_small_shop_match_a_count_by_hand() {
        let mined = mine(
            &shop(),
            &RuleParams { min_support: 0.25, min_confidence: 0.6, min_lift: 1.0, max_len: 3 },
        )
        .unwrap();
        assert_eq!(mined.itemsets, brute_force(&shop(), 2, 3));
        // bread 5, butter 4, bread+butter 4 of 8 baskets: butter → bread has
        // confidence 1 and lift 1 / (5/8) = 1.6.
        let butter_bread = mined
            .rules
            .iter()
            .find(|r| r.antecedent == [3] && r.consequent == [1])
            .expect("butter → bread");
        assert!((butter_bread.support - 0.5).abs() < 1e-12);
        assert!((butter_bread.confidence - 1.0).abs() < 1e-12);
        assert!((butter_bread.lift - 1.6).abs() < 1e-12);
        // beer → nappies: 2 of 2 beer baskets, nappies in 3 of 8: lift 8/3.
        assert_eq!(mined.rules[0].antecedent, [4]);
        assert_eq!(mined.rules[0].consequent, [5]);
        assert!((mined.rules[0].lift - 8.0 / 3.0).abs() < 1e-12);
        for rule in &mined.rules {
            assert!(rule.confidence >= 0.6 && rule.lift >= 1.0, "{rule:?}");
        }
    }

    #[test]
    fn one_item_baskets_count_but_give_no_rule() {
        let baskets = vec![vec![7], vec![7], vec![8], vec![7, 7]];
        let mined =
            mine(&baskets, &RuleParams { min_support: 0.25, ..RuleParams::default() }).unwrap();
        assert_eq!(
            mined.itemsets,
            [Itemset { items: vec![7], count: 3 }, Itemset { items: vec![8], count: 1 }]
        );
        assert!(mined.rules.is_empty());
    }

    #[test]
    fn empty_data_and_thresholds_out_of_range_are_refused() {
        let ok = RuleParams::default();
        assert!(matches!(mine(&[], &ok), Err(InsightError::Empty(_))));
        assert!(matches!(mine(&[vec![], vec![]], &ok), Err(InsightError::Empty(_))));
        let bad = [
            RuleParams { min_support: 0.0, ..ok },
            RuleParams { min_support: 1.5, ..ok },
            RuleParams { min_support: f64::NAN, ..ok },
            RuleParams { min_confidence: -0.1, ..ok },
            RuleParams { min_confidence: 1.01, ..ok },
            RuleParams { min_lift: -1.0, ..ok },
            RuleParams { min_lift: f64::INFINITY, ..ok },
            RuleParams { max_len: 1, ..ok },
        ];
        for params in bad {
            let e = mine(&shop(), &params).unwrap_err();
            assert!(matches!(e, InsightError::OutOfRange { .. }), "{params:?}: {e}");
            assert!(e.to_string().contains("must be"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn fp_growth_finds_exactly_what_counting_finds(
            baskets in proptest::collection::vec(proptest::collection::vec(0u32..12, 0..7), 1..60),
            min_count in 1u32..6,
            max_len in 1usize..5,
        ) {
            prop_assert_eq!(
                frequent_itemsets(&baskets, min_count, max_len),
                brute_force(&baskets, min_count, max_len)
            );
        }

        #[test]
        fn every_rule_is_what_its_counts_say(
            baskets in proptest::collection::vec(proptest::collection::vec(0u32..8, 1..6), 1..40),
        ) {
            let params = RuleParams { min_support: 0.05, min_confidence: 0.0, min_lift: 0.0, max_len: 3 };
            let mined = mine(&baskets, &params).unwrap();
            let n = baskets.len() as f64;
            let holds = |items: &[u32]| {
                baskets.iter().filter(|b| items.iter().all(|i| b.contains(i))).count() as f64
            };
            for rule in &mined.rules {
                let both: Vec<u32> = {
                    let mut v = [rule.antecedent.clone(), rule.consequent.clone()].concat();
                    v.sort_unstable();
                    v
                };
                prop_assert!((rule.support - holds(&both) / n).abs() < 1e-9);
                prop_assert!((rule.confidence - holds(&both) / holds(&rule.antecedent)).abs() < 1e-9);
                let expected_lift = (holds(&both) / holds(&rule.antecedent)) / (holds(&rule.consequent) / n);
                prop_assert!((rule.lift - expected_lift).abs() < 1e-9);
            }
        }
    }
}
