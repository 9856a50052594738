//! Bayesian personalised ranking (Rendle et al., 2009): matrix factorisation trained
//! so that each user scores an item they interacted with above one they did not.
//!
//! For a user u, an observed item i and a sampled unobserved item j, with
//! x̂_uij = x_uᵀ(y_i − y_j) + b_i − b_j, stochastic gradient ascent on
//!
//!   ln σ(x̂_uij) − λ (‖x_u‖² + ‖y_i‖² + ‖y_j‖² + b_i² + b_j²),
//!
//! one epoch drawing as many (u, i, j) triples as there are interactions, users drawn
//! by their interactions (as `implicit` does). Single-threaded, so that a seed gives
//! the same model on every machine.

use std::collections::HashSet;

use shopgraph_embed::exact::dot;

use crate::data::Interactions;
use crate::model::Recommender;
use crate::split::SplitMix;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BprParams {
    pub factors: usize,
    pub learning_rate: f32,
    /// λ.
    pub regularization: f32,
    pub epochs: usize,
    pub seed: u64,
}

impl Default for BprParams {
    fn default() -> Self {
        BprParams { factors: 64, learning_rate: 0.05, regularization: 0.001, epochs: 50, seed: 42 }
    }
}

pub struct Bpr {
    params: BprParams,
    users: Vec<f32>,
    items: Vec<f32>,
    bias: Vec<f32>,
}

impl Bpr {
    pub fn fit(train: &Interactions, params: BprParams) -> Bpr {
        let f = params.factors;
        let mut rng = SplitMix(params.seed);
        let scale = 1.0 / (f as f32).sqrt();
        let mut users: Vec<f32> =
            (0..train.n_users() * f).map(|_| (rng.unit() - 0.5) * scale).collect();
        let mut items: Vec<f32> =
            (0..train.n_items() * f).map(|_| (rng.unit() - 0.5) * scale).collect();
        let mut bias = vec![0f32; train.n_items()];
        let seen: Vec<HashSet<u32>> = (0..train.n_users() as u32)
            .map(|u| train.user(u).iter().map(|r| r.item).collect())
            .collect();
        let rows = train.rows();
        let n_items = train.n_items();
        let (lr, reg) = (params.learning_rate, params.regularization);
        let mut grad_u = vec![0f32; f];
        for _ in 0..params.epochs {
            for _ in 0..rows.len() {
                let r = rows[rng.below(rows.len())];
                let (u, i) = (r.user as usize, r.item as usize);
                if seen[u].len() >= n_items {
                    continue;
                }
                let j = loop {
                    let j = rng.below(n_items);
                    if !seen[u].contains(&(j as u32)) {
                        break j;
                    }
                };
                let (xu, yi, yj) = (
                    &users[u * f..(u + 1) * f],
                    &items[i * f..(i + 1) * f],
                    &items[j * f..(j + 1) * f],
                );
                let x = dot(xu, yi) - dot(xu, yj) + bias[i] - bias[j];
                // d/dx ln σ(x) = σ(−x).
                let g = 1.0 / (1.0 + x.exp());
                for d in 0..f {
                    grad_u[d] = g * (yi[d] - yj[d]) - reg * xu[d];
                }
                for d in 0..f {
                    let xud = users[u * f + d];
                    items[i * f + d] += lr * (g * xud - reg * items[i * f + d]);
                    items[j * f + d] += lr * (-g * xud - reg * items[j * f + d]);
                    users[u * f + d] += lr * grad_u[d];
                }
                bias[i] += lr * (g - reg * bias[i]);
                bias[j] += lr * (-g - reg * bias[j]);
            }
        }
        Bpr { params, users, items, bias }
    }
}

impl Recommender for Bpr {
    fn name(&self) -> String {
        let p = &self.params;
        format!(
            "BPR (f {}, lr {}, λ {}, {} ep)",
            p.factors, p.learning_rate, p.regularization, p.epochs
        )
    }

    fn scores(&self, user: u32, out: &mut [f32]) {
        let f = self.params.factors;
        let x = &self.users[user as usize * f..(user as usize + 1) * f];
        for ((o, y), b) in out.iter_mut().zip(self.items.chunks_exact(f)).zip(&self.bias) {
            *o = dot(x, y) + b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Bpr, BprParams};
    use crate::data::Interactions;
    use crate::eval::evaluate;
    use crate::model::{Popularity, PopularityParams};
    use crate::split::{Protocol, Split};

    /// Four tastes, each a block of items; BPR must rank a user's unseen block items
    /// far better than popularity can (every item is equally popular).
    #[test]
    fn learns_tastes_that_popularity_cannot_see() {
        let mut records = Vec::new();
        for u in 0..80u32 {
            let block = u % 4;
            for k in 0..8u32 {
                if (k + u) % 3 != 0 {
                    records.push((
                        format!("u{u}"),
                        format!("i{}", block * 8 + k),
                        1.0,
                        i64::from(k),
                    ));
                }
            }
        }
        let data = Interactions::from_records(records);
        let split = Split::new(&data, Protocol::Random { test_share: 0.25, seed: 3 });
        let bpr =
            Bpr::fit(&split.train, BprParams { factors: 8, epochs: 200, ..BprParams::default() });
        let popularity = Popularity::fit(&split.train, PopularityParams { half_life_days: None });
        let ours = evaluate(&bpr, &split.train, &split.test);
        let baseline = evaluate(&popularity, &split.train, &split.test);
        assert!(ours.ndcg10 > 0.8, "{ours:?}");
        assert!(ours.ndcg10 > baseline.ndcg10 + 0.3, "{ours:?} vs {baseline:?}");
    }
}
