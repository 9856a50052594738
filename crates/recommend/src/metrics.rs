//! Ranking and rating metrics, one user at a time; [`crate::eval`] averages them.
//!
//! Definitions (those of RecBole, so figures compare with published ones): for a user
//! with relevant (held-out) items R and a ranked list L, best first,
//!
//! - Recall@k = |L[..k] ∩ R| / |R|
//! - HR@k = 1 if L[..k] ∩ R is not empty, else 0
//! - NDCG@k = DCG@k / IDCG@k, DCG@k = Σ_{i<k, L[i]∈R} 1 / log2(i + 2), and IDCG@k the
//!   DCG of a list with all of R first (min(|R|, k) hits)
//! - AUC = the share of (relevant, other) candidate pairs the scores order correctly,
//!   ties counting one half (the Mann–Whitney statistic)
//! - coverage@k = distinct items in all users' L[..k] / all items
//! - MSE = mean (prediction − rating)², RMSE = √MSE

/// Hits of `ranked[..k]` in `relevant` (sorted ascending).
fn hits(ranked: &[u32], relevant: &[u32], k: usize) -> impl Iterator<Item = usize> {
    ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, item)| relevant.binary_search(item).is_ok())
        .map(|(i, _)| i)
}

pub fn recall(ranked: &[u32], relevant: &[u32], k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    hits(ranked, relevant, k).count() as f64 / relevant.len() as f64
}

pub fn hit_rate(ranked: &[u32], relevant: &[u32], k: usize) -> f64 {
    f64::from(u8::from(hits(ranked, relevant, k).next().is_some()))
}

pub fn ndcg(ranked: &[u32], relevant: &[u32], k: usize) -> f64 {
    let gain = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let dcg: f64 = hits(ranked, relevant, k).map(gain).sum();
    let ideal: f64 = (0..relevant.len().min(k)).map(gain).sum();
    if ideal == 0.0 { 0.0 } else { dcg / ideal }
}

/// AUC of one user's `scores` over the items `candidate` admits, `relevant` (sorted
/// ascending) the positives. `None` when there are no positives or no negatives.
pub fn auc(scores: &[f32], candidate: impl Fn(u32) -> bool, relevant: &[u32]) -> Option<f64> {
    let mut scored: Vec<(f32, bool)> = (0..scores.len() as u32)
        .filter(|&i| candidate(i))
        .map(|i| (scores[i as usize], relevant.binary_search(&i).is_ok()))
        .collect();
    let positives = scored.iter().filter(|(_, p)| *p).count();
    let negatives = scored.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    scored.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the positives' ranks (1-based, ties sharing their average rank).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < scored.len() {
        let mut j = i;
        while j < scored.len() && scored[j].0 == scored[i].0 {
            j += 1;
        }
        let average_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += average_rank * scored[i..j].iter().filter(|(_, p)| *p).count() as f64;
        i = j;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// `(MSE, RMSE)` of predictions against ratings.
pub fn mse(pairs: impl IntoIterator<Item = (f32, f32)>) -> (f64, f64) {
    let (mut sum, mut n) = (0.0, 0usize);
    for (predicted, actual) in pairs {
        sum += f64::from(predicted - actual).powi(2);
        n += 1;
    }
    let mse = if n == 0 { 0.0 } else { sum / n as f64 };
    (mse, mse.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ranking_metrics_by_hand() {
        // Relevant {2, 5, 9}; the list hits 5 at rank 1 and 9 at rank 3 (0-based).
        let ranked = [5, 1, 7, 9, 3];
        let relevant = [2, 5, 9];
        assert!(close(recall(&ranked, &relevant, 2), 1.0 / 3.0));
        assert!(close(recall(&ranked, &relevant, 5), 2.0 / 3.0));
        assert_eq!(hit_rate(&ranked, &relevant, 1), 1.0);
        assert_eq!(hit_rate(&[1, 7], &relevant, 2), 0.0);
        // DCG@5 = 1/log2(2) + 1/log2(5); IDCG@5 = 1 + 1/log2(3) + 1/log2(4).
        let want = (1.0 + 1.0 / 5f64.log2()) / (1.0 + 1.0 / 3f64.log2() + 0.5);
        assert!(close(ndcg(&ranked, &relevant, 5), want));
        // At k = 1 the ideal holds one hit, and so does the list.
        assert!(close(ndcg(&ranked, &relevant, 1), 1.0));
        assert_eq!(ndcg(&ranked, &[], 5), 0.0);
    }

    #[test]
    fn auc_by_hand() {
        // Items 0..5 with scores; 4 is not a candidate (seen in training).
        let scores = [0.9, 0.1, 0.5, 0.5, 2.0];
        let candidate = |i: u32| i != 4;
        // Positives {0, 2}: 0 beats 1, 3 → 2 pairs; 2 beats 1, ties 3 → 1.5. Of 4.
        assert!(close(auc(&scores, candidate, &[0, 2]).unwrap(), 3.5 / 4.0));
        assert!(close(auc(&scores, candidate, &[1]).unwrap(), 0.0));
        assert_eq!(auc(&scores, candidate, &[]), None);
        assert_eq!(auc(&scores, |i| i == 0, &[0]), None, "no negatives");
    }

    #[test]
    fn mse_by_hand() {
        let (mse, rmse) = mse([(3.0, 4.0), (5.0, 3.0)]);
        assert!(close(mse, 2.5) && close(rmse, 2.5f64.sqrt()));
    }
}
