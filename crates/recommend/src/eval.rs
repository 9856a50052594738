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

/// Scores `model` (fitted on `train`) on `test`: one pass per test user ranks every
/// item and computes its AUC from the same scores.
pub fn evaluate(model: &dyn Recommender, train: &Interactions, test: &Interactions) -> Row {
    let n_items = train.n_items();
    let (lists, auc): (Vec<Vec<u32>>, Vec<f64>) = (0..test.n_users() as u32)
        .into_par_iter()
        .map_init(
            || vec![0f32; n_items],
            |scores, u| {
                if test.user(u).is_empty() {
                    return (Vec::new(), f64::NAN);
                }
                model.scores(u, scores);
                for r in train.user(u) {
                    scores[r.item as usize] = f32::NEG_INFINITY;
                }
                let scores = &*scores;
                let auc = metrics::auc(
                    scores,
                    |i| scores[i as usize] > f32::NEG_INFINITY,
                    &relevant(test, u),
                );
                (top_k(scores, KS[1]), auc.unwrap_or(f64::NAN))
            },
        )
        .unzip();
    let mut row = score_lists(&model.name(), &lists, train, test);
    row.auc = mean(auc.iter().copied());
    if model.predicts_ratings() {
        let (mse, rmse) =
            metrics::mse(test.rows().iter().map(|r| (model.predict(r.user, r.item), r.rating)));
        (row.mse, row.rmse) = (Some(mse), Some(rmse));
    }
    row
}

/// The ranking metrics of lists (one per user, best first; from a model or a peer's
/// file) against `test`. AUC needs every item's score, so it is left unknown (NaN)
/// here; [`evaluate`] fills it in for a model.
pub fn score_lists(
    name: &str,
    lists: &[Vec<u32>],
    train: &Interactions,
    test: &Interactions,
) -> Row {
    let users: Vec<u32> =
        (0..test.n_users() as u32).filter(|&u| !test.user(u).is_empty()).collect();
    let per_user: Vec<[f64; 5]> = users
        .par_iter()
        .map(|&u| {
            let relevant = relevant(test, u);
            let ranked = &lists[u as usize];
            [
                metrics::recall(ranked, &relevant, 10),
                metrics::recall(ranked, &relevant, 20),
                metrics::ndcg(ranked, &relevant, 10),
                metrics::ndcg(ranked, &relevant, 20),
                metrics::hit_rate(ranked, &relevant, 10),
            ]
        })
        .collect();
    let column = |i: usize| mean(per_user.iter().map(|m| m[i]));
    let shown: HashSet<u32> =
        users.iter().flat_map(|&u| lists[u as usize].iter().take(10).copied()).collect();
    Row {
        model: name.to_owned(),
        recall10: column(0),
        recall20: column(1),
        ndcg10: column(2),
        ndcg20: column(3),
        hr10: column(4),
        auc: f64::NAN,
        coverage10: shown.len() as f64 / train.n_items().max(1) as f64,
        rmse: None,
        mse: None,
        fit: Duration::ZERO,
        users: users.len(),
    }
}

/// A user's held-out items, sorted.
fn relevant(test: &Interactions, u: u32) -> Vec<u32> {
    let mut items: Vec<u32> = test.user(u).iter().map(|r| r.item).collect();
    items.sort_unstable();
    items
}

/// The mean of the values that are not NaN (NaN when there are none).
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.filter(|v| !v.is_nan()).fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
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
