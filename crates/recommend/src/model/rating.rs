//! Rating prediction: biased matrix factorisation trained by SGD (Funk's SVD, as
//! `surprise` and `cornac` implement it), for the table's MSE/RMSE.
//!
//! ```text
//! r̂(u, i) = μ + b_u + b_i + p_uᵀ q_i
//! minimise Σ (r − r̂)² + λ (b_u² + b_i² + ‖p_u‖² + ‖q_i‖²)
//! ```
//!
//! It predicts the value of a rating, which is not the same question as what to show
//! first: its ranking row is there for completeness, its RMSE is the point.

use crate::data::Interactions;
use crate::model::Recommender;
use crate::split::SplitMix;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatingParams {
    pub factors: usize,
    pub regularization: f32,
    pub learning_rate: f32,
    pub epochs: usize,
    pub seed: u64,
}

impl Default for RatingParams {
    fn default() -> Self {
        RatingParams {
            factors: 50,
            regularization: 0.05,
            learning_rate: 0.01,
            epochs: 25,
            seed: 2026,
        }
    }
}

pub struct RatingMf {
    params: RatingParams,
    mean: f32,
    user_bias: Vec<f32>,
    item_bias: Vec<f32>,
    users: Vec<f32>,
    items: Vec<f32>,
    /// The data's rating range, to clip predictions into.
    range: (f32, f32),
}

impl RatingMf {
    pub fn fit(train: &Interactions, params: RatingParams) -> RatingMf {
        let k = params.factors;
        let mut rng = SplitMix(params.seed);
        let mut init =
            |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.unit() - 0.5) * 0.1).collect() };
        let mut users = init(train.n_users() * k);
        let mut items = init(train.n_items() * k);
        let mut user_bias = vec![0f32; train.n_users()];
        let mut item_bias = vec![0f32; train.n_items()];
        let rows = train.rows();
        let mean = if rows.is_empty() {
            0.0
        } else {
            (rows.iter().map(|r| f64::from(r.rating)).sum::<f64>() / rows.len() as f64) as f32
        };
        let range = rows.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(r.rating), hi.max(r.rating))
        });
        let mut order: Vec<usize> = (0..rows.len()).collect();
        let (lr, reg) = (params.learning_rate, params.regularization);
        for _ in 0..params.epochs {
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
            for &n in &order {
                let r = rows[n];
                let (u, i) = (r.user as usize, r.item as usize);
                let p = &mut users[u * k..(u + 1) * k];
                let q = &mut items[i * k..(i + 1) * k];
                let dot: f32 = p.iter().zip(q.iter()).map(|(a, b)| a * b).sum();
                let error = r.rating - (mean + user_bias[u] + item_bias[i] + dot);
                user_bias[u] += lr * (error - reg * user_bias[u]);
                item_bias[i] += lr * (error - reg * item_bias[i]);
                for (pf, qf) in p.iter_mut().zip(q.iter_mut()) {
                    let (a, b) = (*pf, *qf);
                    *pf += lr * (error * b - reg * a);
                    *qf += lr * (error * a - reg * b);
                }
            }
        }
        RatingMf { params, mean, user_bias, item_bias, users, items, range }
    }
}

impl Recommender for RatingMf {
    fn name(&self) -> String {
        let p = &self.params;
        format!("rating MF (f {}, λ {}, {} ep)", p.factors, p.regularization, p.epochs)
    }

    fn scores(&self, user: u32, out: &mut [f32]) {
        for (i, score) in out.iter_mut().enumerate() {
            *score = self.predict(user, i as u32);
        }
    }

    fn predicts_ratings(&self) -> bool {
        true
    }

    fn predict(&self, user: u32, item: u32) -> f32 {
        let k = self.params.factors;
        let (u, i) = (user as usize, item as usize);
        let dot = shopgraph_embed::exact::dot(
            &self.users[u * k..(u + 1) * k],
            &self.items[i * k..(i + 1) * k],
        );
        (self.mean + self.user_bias[u] + self.item_bias[i] + dot).clamp(self.range.0, self.range.1)
    }
}

#[cfg(test)]
mod tests {
    use super::{RatingMf, RatingParams};
    use crate::Interactions;
    use crate::model::Recommender;

    #[test]
    fn learns_user_and_item_offsets() {
        // Generous users rate 1 higher; good items are rated 2 higher.
        let mut records = Vec::new();
        for u in 0..20 {
            for i in 0..10 {
                if (u + i) % 3 == 0 {
                    continue; // held back
                }
                let rating = 1.0 + f32::from(u % 2 == 0) + 2.0 * f32::from(i < 5);
                records.push((format!("u{u}"), format!("i{i}"), rating, 0));
            }
        }
        let data = Interactions::from_records(records);
        let model = RatingMf::fit(
            &data,
            RatingParams { epochs: 200, factors: 4, ..RatingParams::default() },
        );
        let ids = data.ids();
        // A pair never seen: a generous user and a good item.
        let predicted = model.predict(ids.user("u0").unwrap(), ids.item("i0").unwrap());
        assert!((predicted - 4.0).abs() < 0.3, "{predicted}");
        let predicted = model.predict(ids.user("u1").unwrap(), ids.item("i8").unwrap());
        assert!((predicted - 1.0).abs() < 0.3, "{predicted}");
    }
}
