//! Item-based k nearest neighbours on implicit feedback.
//!
//! sim(i, j) = |U_i ∩ U_j| / (√|U_i| √|U_j| + shrink), the cosine of the items' user
//! sets, shrunk towards 0 for items with few users; each item keeps its `neighbours`
//! most similar items. A user's score for j is Σ_{i ∈ history} sim(i, j) over the
//! neighbour lists of the history's items.

use rayon::prelude::*;

use crate::data::Interactions;
use crate::model::Recommender;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ItemKnnParams {
    pub neighbours: usize,
    pub shrink: f32,
}

pub struct ItemKnn {
    params: ItemKnnParams,
    /// Per item: its neighbours with their similarity.
    neighbours: Vec<Vec<(u32, f32)>>,
    history: Interactions,
}

impl ItemKnn {
    pub fn fit(train: &Interactions, params: ItemKnnParams) -> ItemKnn {
        let item_users = train.item_users();
        let counts = train.item_counts();
        let n = train.n_items();
        let neighbours = (0..n)
            .into_par_iter()
            .map_init(
                || (vec![0u32; n], Vec::new()),
                |(co, touched), i| {
                    for &u in &item_users[i] {
                        for r in train.user(u) {
                            let j = r.item as usize;
                            if co[j] == 0 {
                                touched.push(j);
                            }
                            co[j] += 1;
                        }
                    }
                    let mut sims: Vec<(u32, f32)> = touched
                        .iter()
                        .filter(|&&j| j != i)
                        .map(|&j| {
                            let norm = (counts[i] as f32).sqrt() * (counts[j] as f32).sqrt();
                            (j as u32, co[j] as f32 / (norm + params.shrink))
                        })
                        .collect();
                    for &j in touched.iter() {
                        co[j] = 0;
                    }
                    touched.clear();
                    let by_sim =
                        |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
                    if sims.len() > params.neighbours {
                        sims.select_nth_unstable_by(params.neighbours, by_sim);
                        sims.truncate(params.neighbours);
                    }
                    sims.sort_unstable_by(by_sim);
                    // `truncate` keeps the capacity of every co-occurring item: on
                    // Book-Crossing, where a few readers rated thousands of books, that
                    // held 6 GB for lists of 100.
                    sims.shrink_to_fit();
                    sims
                },
            )
            .collect();
        ItemKnn { params, neighbours, history: train.clone() }
    }

    /// The most similar items to `item`, best first.
    pub fn similar(&self, item: u32) -> &[(u32, f32)] {
        &self.neighbours[item as usize]
    }
}

impl Recommender for ItemKnn {
    fn name(&self) -> String {
        format!("item-kNN (k {}, shrink {})", self.params.neighbours, self.params.shrink)
    }

    fn scores(&self, user: u32, out: &mut [f32]) {
        let items: Vec<u32> = self.history.user(user).iter().map(|r| r.item).collect();
        self.scores_for_session(&items, out);
    }

    fn scores_for_session(&self, session: &[u32], out: &mut [f32]) -> bool {
        out.fill(0.0);
        for &i in session {
            for &(j, s) in &self.neighbours[i as usize] {
                out[j as usize] += s;
            }
        }
        true
    }
}
