//! Ranking quality against judged queries: nDCG@k, recall@k and MRR.
//!
//! A judged query names the products that answer it with a grade (2 = what was
//! meant, 1 = a fair answer). The set in `graph_data/search/queries.jsonl` mixes named
//! products, typos, descriptions, synonyms and Chinese, over the catalog in
//! `graph_data/search/catalog/`.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct JudgedQuery {
    pub query: String,
    /// What the query tests: "named", "typo", "described", "synonym", "chinese".
    pub kind: String,
    /// sku → grade.
    pub relevant: HashMap<String, u32>,
}

/// Reads one judged query a line; blank lines are skipped.
pub fn parse_judgements(text: &str) -> Result<Vec<JudgedQuery>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

/// Normalised discounted cumulative gain at `k`, with gain 2^grade − 1.
pub fn ndcg_at(k: usize, ranked: &[String], relevant: &HashMap<String, u32>) -> f64 {
    let gain = |g: u32| f64::from((1u32 << g) - 1);
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, sku)| gain(relevant.get(sku).copied().unwrap_or(0)) / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<u32> = relevant.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 =
        ideal.iter().take(k).enumerate().map(|(i, &g)| gain(g) / (i as f64 + 2.0).log2()).sum();
    if idcg == 0.0 { 0.0 } else { dcg / idcg }
}

/// Share of the relevant products found in the first `k`.
pub fn recall_at(k: usize, ranked: &[String], relevant: &HashMap<String, u32>) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    let found = ranked.iter().take(k).filter(|s| relevant.contains_key(*s)).count();
    found as f64 / relevant.len() as f64
}

/// 1 / rank of the first relevant product (0 when none is ranked).
pub fn reciprocal_rank(ranked: &[String], relevant: &HashMap<String, u32>) -> f64 {
    ranked.iter().position(|s| relevant.contains_key(s)).map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Quality {
    pub queries: usize,
    pub ndcg10: f64,
    pub recall10: f64,
    pub mrr: f64,
}

/// Mean quality over all queries and per kind, for a system that ranks skus.
pub fn evaluate(
    queries: &[JudgedQuery],
    mut rank: impl FnMut(&str) -> Vec<String>,
) -> (Quality, BTreeMap<String, Quality>) {
    let mut all = Quality::default();
    let mut by_kind: BTreeMap<String, Quality> = BTreeMap::new();
    for q in queries {
        let ranked = rank(&q.query);
        let (n, r, m) = (
            ndcg_at(10, &ranked, &q.relevant),
            recall_at(10, &ranked, &q.relevant),
            reciprocal_rank(&ranked, &q.relevant),
        );
        for acc in [&mut all, by_kind.entry(q.kind.clone()).or_default()] {
            acc.queries += 1;
            acc.ndcg10 += n;
            acc.recall10 += r;
            acc.mrr += m;
        }
    }
    for acc in std::iter::once(&mut all).chain(by_kind.values_mut()) {
        let n = acc.queries.max(1) as f64;
        acc.ndcg10 /= n;
        acc.recall10 /= n;
        acc.mrr /= n;
    }
    (all, by_kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(pairs: &[(&str, u32)]) -> HashMap<String, u32> {
        pairs.iter().map(|(s, g)| (s.to_string(), *g)).collect()
    }

    fn list(skus: &[&str]) -> Vec<String> {
        skus.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn perfect_ranking_scores_one_and_order_matters() {
        let r = rel(&[("a", 2), ("b", 1)]);
        assert!((ndcg_at(10, &list(&["a", "b"]), &r) - 1.0).abs() < 1e-12);
        let swapped = ndcg_at(10, &list(&["b", "a"]), &r);
        assert!(swapped < 1.0 && swapped > 0.5, "{swapped}");
        assert_eq!(ndcg_at(10, &list(&["x", "y"]), &r), 0.0);
        assert_eq!(recall_at(1, &list(&["a", "b"]), &r), 0.5);
        assert_eq!(reciprocal_rank(&list(&["x", "b"]), &r), 0.5);
    }

    #[test]
    fn the_repository_judgements_parse() {
        let q = parse_judgements(include_str!("../../../graph_data/search/queries.jsonl"))
            .expect("parses");
        assert!(q.len() >= 30);
        assert!(q.iter().all(|q| !q.relevant.is_empty()));
    }
}
