//! Alternating least squares for implicit feedback (Hu, Koren and Volinsky, 2008),
//! solved with a few conjugate-gradient steps per user and item (Takács et al., 2011),
//! as the `implicit` library does.
//!
//! Every (user, item) pair has a preference p_ui (1 if the user interacted, else 0)
//! and a confidence c_ui = 1 + α for observed pairs, 1 otherwise. With user factors
//! x_u and item factors y_i in ℝ^f, ALS minimises
//!
//!   Σ_{u,i} c_ui (p_ui − x_uᵀ y_i)² + λ (Σ_u ‖x_u‖² + Σ_i ‖y_i‖²)
//!
//! by fixing Y and solving for each x_u, then the other way round:
//!
//!   (YᵀY + Yᵀ(C_u − I)Y + λI) x_u = Yᵀ C_u p_u,
//!
//! where YᵀY is shared by all users and the rest touches only the user's items. The
//! score of item i for user u is x_uᵀ y_i.

use rayon::prelude::*;
use shopgraph_embed::exact::dot;

use crate::data::Interactions;
use crate::model::Recommender;
use crate::split::SplitMix;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlsParams {
    pub factors: usize,
    /// λ.
    pub regularization: f32,
    /// α: how much more an observed pair counts than an unobserved one.
    pub alpha: f32,
    pub iterations: usize,
    /// Conjugate-gradient steps per solve, warm-started from the previous factors.
    pub cg_steps: usize,
    pub seed: u64,
}

impl Default for AlsParams {
    fn default() -> Self {
        AlsParams {
            factors: 64,
            regularization: 0.01,
            alpha: 1.0,
            iterations: 15,
            cg_steps: 3,
            seed: 42,
        }
    }
}

pub struct Als {
    params: AlsParams,
    /// `n_users × factors`, row-major.
    users: Vec<f32>,
    /// `n_items × factors`, row-major.
    items: Vec<f32>,
}

impl Als {
    pub fn fit(train: &Interactions, params: AlsParams) -> Als {
        let f = params.factors;
        let mut rng = SplitMix(params.seed);
        let mut init =
            |n: usize| -> Vec<f32> { (0..n * f).map(|_| (rng.unit() - 0.5) * 0.02).collect() };
        let mut users = init(train.n_users());
        let mut items = init(train.n_items());
        // Each side's observed pairs: users' items and items' users.
        let by_user: Vec<Vec<u32>> = (0..train.n_users() as u32)
            .map(|u| train.user(u).iter().map(|r| r.item).collect())
            .collect();
        let by_item = train.item_users();
        for _ in 0..params.iterations {
            solve_side(&mut users, &items, &by_user, &params);
            solve_side(&mut items, &users, &by_item, &params);
        }
        Als { params, users, items }
    }

    pub fn user_factors(&self, user: u32) -> &[f32] {
        let f = self.params.factors;
        &self.users[user as usize * f..(user as usize + 1) * f]
    }

    pub fn item_factors(&self, item: u32) -> &[f32] {
        let f = self.params.factors;
        &self.items[item as usize * f..(item as usize + 1) * f]
    }
}

/// Solves every row of `solve` (users or items) with the other side `fixed` held.
fn solve_side(solve: &mut [f32], fixed: &[f32], observed: &[Vec<u32>], p: &AlsParams) {
    let f = p.factors;
    // G = FᵀF + λI, shared by every row.
    let mut gram = vec![0f32; f * f];
    gram.par_chunks_mut(f).enumerate().for_each(|(a, row)| {
        for y in fixed.chunks_exact(f) {
            let ya = y[a];
            for (g, yb) in row.iter_mut().zip(y) {
                *g += ya * yb;
            }
        }
        row[a] += p.regularization;
    });
    let confidence = 1.0 + p.alpha;
    solve.par_chunks_mut(f).zip(observed).for_each_init(
        || (vec![0f32; f], vec![0f32; f], vec![0f32; f]),
        |(r, dir, ap), (x, seen)| {
            // r = b − A x, with b = Σ c y_i and A x = G x + Σ (c − 1)(y_i·x) y_i.
            mul_gram(&gram, x, r);
            r.iter_mut().for_each(|v| *v = -*v);
            for &i in seen {
                let y = &fixed[i as usize * f..(i as usize + 1) * f];
                let w = confidence - (confidence - 1.0) * dot(y, x);
                r.iter_mut().zip(y).for_each(|(r, y)| *r += w * y);
            }
            dir.copy_from_slice(r);
            let mut rs_old = dot(r, r);
            for _ in 0..p.cg_steps {
                if rs_old < 1e-20 {
                    break;
                }
                mul_gram(&gram, dir, ap);
                for &i in seen {
                    let y = &fixed[i as usize * f..(i as usize + 1) * f];
                    let w = (confidence - 1.0) * dot(y, dir);
                    ap.iter_mut().zip(y).for_each(|(a, y)| *a += w * y);
                }
                let step = rs_old / dot(dir, ap);
                x.iter_mut().zip(dir.iter()).for_each(|(x, d)| *x += step * d);
                r.iter_mut().zip(ap.iter()).for_each(|(r, a)| *r -= step * a);
                let rs_new = dot(r, r);
                let keep = rs_new / rs_old;
                dir.iter_mut().zip(r.iter()).for_each(|(d, r)| *d = r + keep * *d);
                rs_old = rs_new;
            }
        },
    );
}

fn mul_gram(gram: &[f32], x: &[f32], out: &mut [f32]) {
    let f = x.len();
    for (o, row) in out.iter_mut().zip(gram.chunks_exact(f)) {
        *o = dot(row, x);
    }
}

impl Recommender for Als {
    fn name(&self) -> String {
        let p = &self.params;
        format!("ALS (f {}, λ {}, α {}, {} it)", p.factors, p.regularization, p.alpha, p.iterations)
    }

    fn scores(&self, user: u32, out: &mut [f32]) {
        let x = self.user_factors(user);
        for (o, y) in out.iter_mut().zip(self.items.chunks_exact(self.params.factors)) {
            *o = dot(x, y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Als, AlsParams};
    use crate::data::Interactions;
    use crate::model::Recommender;

    /// Two groups of users with two disjoint tastes: each user is recommended the
    /// item of their group they have not seen.
    #[test]
    fn learns_two_tastes() {
        let mut records = Vec::new();
        for u in 0..20 {
            let group = if u < 10 { 0 } else { 5 };
            for i in 0..5 {
                if i != u % 5 {
                    records.push((format!("u{u}"), format!("i{}", group + i), 1.0, 0));
                }
            }
        }
        let data = Interactions::from_records(records);
        // Two factors: too few to fit every zero, enough for two tastes.
        let params =
            AlsParams { factors: 2, alpha: 10.0, regularization: 0.1, ..AlsParams::default() };
        let als = Als::fit(&data, params);
        let mut scores = vec![0f32; data.n_items()];
        for u in 0..data.n_users() as u32 {
            als.scores(u, &mut scores);
            let seen: Vec<u32> = data.user(u).iter().map(|r| r.item).collect();
            let best = (0..data.n_items() as u32)
                .filter(|i| !seen.contains(i))
                .max_by(|a, b| scores[*a as usize].total_cmp(&scores[*b as usize]))
                .unwrap();
            let group = |i: u32| data.ids().items[i as usize][1..].parse::<u32>().unwrap() / 5;
            let user_group = data.ids().users[u as usize][1..].parse::<u32>().unwrap() / 10;
            assert_eq!(group(best), user_group, "user {u}");
        }
    }
}
