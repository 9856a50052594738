//! One model on one split: full ranking over every item, the user's training items
//! removed, averaged over the users with held-out items.

use std::collections::HashSet;
use std::time::Duration;

use rayon::prelude::*;

use crate::data::Interactions;
use crate::metrics;
use crate::model::Recommender;

/// The list lengths the table reports.
pub const KS: [usize; 2] = [10, 20];

/// One row of the table.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub model: String,
    pub recall10: f64,
    pub recall20: f64,
    pub ndcg10: f64,
    pub ndcg20: f64,
    pub hr10: f64,
    pub auc: f64,
    pub coverage10: f64,
    /// Rating prediction, for the models that predict ratings.
    pub rmse: Option<f64>,
    pub mse: Option<f64>,
    pub fit: Duration,
    pub users: usize,
}

/// Scores `model` (fitted on `train`) on `test`.
pub fn evaluate(model: &dyn Recommender, train: &Interactions, test: &Interactions) -> Row {
    let lists = rank_all(model, train, test, KS[1]);
    score_lists(&model.name(), &lists, train, test, Some(model))
}

/// Every test user's top `k`, training items removed.
pub fn rank_all(
    model: &dyn Recommender,
    train: &Interactions,
    test: &Interactions,
    k: usize,
) -> Vec<Vec<u32>> {
    let n_items = train.n_items();
    (0..test.n_users() as u32)
        .into_par_iter()
        .map_init(
            || vec![0f32; n_items],
            |scores, u| {
                if test.user(u).is_empty() {
                    return Vec::new();
                }
                model.scores(u, scores);
                for r in train.user(u) {
                    scores[r.item as usize] = f32::NEG_INFINITY;
                }
                top_k(scores, k)
            },
        )
        .collect()
}

/// Averages the metrics of ranked lists (from a model or a peer's file). AUC needs
/// every item's score, so it is computed only when `model` is given.
pub fn score_lists(
    name: &str,
    lists: &[Vec<u32>],
    train: &Interactions,
    test: &Interactions,
    model: Option<&dyn Recommender>,
) -> Row {
    let n_items = train.n_items();
    let users: Vec<u32> =
        (0..test.n_users() as u32).filter(|&u| !test.user(u).is_empty()).collect();
    let per_user: Vec<[f64; 6]> = users
        .par_iter()
        .map_init(
            || vec![0f32; n_items],
            |scores, &u| {
                let mut relevant: Vec<u32> = test.user(u).iter().map(|r| r.item).collect();
                relevant.sort_unstable();
                let ranked = &lists[u as usize];
                let auc = model.and_then(|m| {
                    m.scores(u, scores);
                    let seen: HashSet<u32> = train.user(u).iter().map(|r| r.item).collect();
                    metrics::auc(scores, |i| !seen.contains(&i), &relevant)
                });
                [
                    metrics::recall(ranked, &relevant, 10),
                    metrics::recall(ranked, &relevant, 20),
                    metrics::ndcg(ranked, &relevant, 10),
                    metrics::ndcg(ranked, &relevant, 20),
                    metrics::hit_rate(ranked, &relevant, 10),
                    auc.unwrap_or(f64::NAN),
                ]
            },
        )
        .collect();
    let mean = |i: usize| {
        let values: Vec<f64> = per_user.iter().map(|m| m[i]).filter(|v| !v.is_nan()).collect();
        if values.is_empty() { f64::NAN } else { values.iter().sum::<f64>() / values.len() as f64 }
    };
    let shown: HashSet<u32> =
        users.iter().flat_map(|&u| lists[u as usize].iter().take(10).copied()).collect();
    let (mse, rmse) = match model {
        Some(m) if m.predicts_ratings() => {
            let (mse, rmse) =
                metrics::mse(test.rows().iter().map(|r| (m.predict(r.user, r.item), r.rating)));
            (Some(mse), Some(rmse))
        }
        _ => (None, None),
    };
    Row {
        model: name.to_owned(),
        recall10: mean(0),
        recall20: mean(1),
        ndcg10: mean(2),
        ndcg20: mean(3),
        hr10: mean(4),
        auc: mean(5),
        coverage10: shown.len() as f64 / n_items.max(1) as f64,
        rmse,
        mse,
        fit: Duration::ZERO,
        users: users.len(),
    }
}

/// Indices of the `k` highest scores, best first (ties by lower index); items scored
/// −∞ are never returned.
pub fn top_k(scores: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> =
        (0..scores.len() as u32).filter(|&i| scores[i as usize] > f32::NEG_INFINITY).collect();
    let order =
        |a: &u32, b: &u32| scores[*b as usize].total_cmp(&scores[*a as usize]).then(a.cmp(b));
    if idx.len() > k {
        idx.select_nth_unstable_by(k, order);
        idx.truncate(k);
    }
    idx.sort_unstable_by(order);
    idx
}

#[cfg(test)]
mod tests {
    use super::top_k;

    #[test]
    fn top_k_orders_and_skips_removed_items() {
        let scores = [0.5, f32::NEG_INFINITY, 2.0, 0.5, 1.0];
        assert_eq!(top_k(&scores, 3), [2, 4, 0]);
        assert_eq!(top_k(&scores, 10), [2, 4, 0, 3]);
    }
}
