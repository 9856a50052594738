//! EASE (Steck 2019): a full item × item weight matrix in closed form.
//!
//! With `G = XᵀX` the item co-occurrence counts of the binary user × item matrix `X`:
//!
//! ```text
//! P = (G + λI)⁻¹,    B_ij = −P_ij / P_jj  (i ≠ j),   B_jj = 0
//! score(u, j) = Σ_{i ∈ H(u)} B_ij
//! ```
//!
//! the least-squares item-to-item model `X ≈ XB` with a zero diagonal. One Cholesky
//! inverse of an `n × n` matrix (LAPACK through OpenBLAS): a second for MovieLens-1M's
//! 3,706 items, and `n²` floats of memory, so a catalog much past 20,000 items is not
//! for it.

use rayon::prelude::*;

use crate::data::Interactions;
use crate::model::Recommender;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EaseParams {
    pub lambda: f32,
}

pub struct Ease {
    params: EaseParams,
    n: usize,
    /// Row-major `n × n`: row `i` holds `B_i·`.
    weights: Vec<f32>,
    history: Interactions,
}

impl Ease {
    pub fn fit(train: &Interactions, params: EaseParams) -> Ease {
        let n = train.n_items();
        let mut g = vec![0f32; n * n];
        for u in 0..train.n_users() as u32 {
            let items: Vec<usize> = train.user(u).iter().map(|r| r.item as usize).collect();
            for &i in &items {
                let row = &mut g[i * n..(i + 1) * n];
                for &j in &items {
                    row[j] += 1.0;
                }
            }
        }
        for i in 0..n {
            g[i * n + i] += params.lambda;
        }
        // λ > 0 makes G + λI positive definite, so the inverse exists.
        shopgraph_embed::inverse_spd(&mut g, n).expect("G + λI is positive definite for λ > 0");
        let diagonal: Vec<f32> = (0..n).map(|j| g[j * n + j]).collect();
        g.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, row)| {
            for (j, w) in row.iter_mut().enumerate() {
                *w = if i == j { 0.0 } else { -*w / diagonal[j] };
            }
        });
        Ease { params, n, weights: g, history: train.clone() }
    }
}

impl Recommender for Ease {
    fn name(&self) -> String {
        format!("EASE (λ {})", self.params.lambda)
    }

    fn scores(&self, user: u32, out: &mut [f32]) {
        let items: Vec<u32> = self.history.user(user).iter().map(|r| r.item).collect();
        self.scores_for_session(&items, out);
    }

    fn scores_for_session(&self, session: &[u32], out: &mut [f32]) -> bool {
        out.fill(0.0);
        for &i in session {
            let row = &self.weights[i as usize * self.n..][..self.n];
            out.iter_mut().zip(row).for_each(|(o, w)| *o += w);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{Ease, EaseParams};
    use crate::{Interactions, Recommender};

    #[test]
    fn items_chosen_together_score_together() {
        // Two tastes: {a, b, c} and {x, y}; u has a and b, so c comes before x and y.
        let mut records = Vec::new();
        for k in 0..5 {
            for i in ["a", "b", "c"] {
                records.push((format!("p{k}"), i.to_owned(), 1.0, 0));
            }
            for i in ["x", "y"] {
                records.push((format!("q{k}"), i.to_owned(), 1.0, 0));
            }
        }
        records.push(("u".into(), "a".into(), 1.0, 0));
        records.push(("u".into(), "b".into(), 1.0, 0));
        let data = Interactions::from_records(records);
        let ease = Ease::fit(&data, EaseParams { lambda: 1.0 });
        let mut scores = vec![0f32; data.n_items()];
        ease.scores(data.ids().user("u").unwrap(), &mut scores);
        let s = |i: &str| scores[data.ids().item(i).unwrap() as usize];
        assert!(s("c") > 0.5, "{}", s("c"));
        assert!(s("x").abs() < 1e-4 && s("y").abs() < 1e-4);
    }
}
