//! Content: items whose text means what the shopper's items mean.
//!
//! Every item has a unit BERT vector `x_i` of its text (title, year, categories, maker:
//! [`ItemSide::texts`](crate::side::ItemSide)). A shopper's profile is the recency-
//! weighted sum of the vectors of the items in their history,
//!
//! ```text
//! p_u = Σ_j w_j x_j,    w_j = 0.5^(age_j / h)
//! ```
//!
//! with `age_j` the number of the user's events after `j` and `h` the half-life in
//! events (uniform when `None`); an item scores `p_u · x_i`. The same profile can be
//! made from stated interests alone ([`Content::profile_of`]), which is how a shopper
//! with no events gets personal results.

use crate::data::Interactions;
use crate::model::Recommender;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContentParams {
    /// Half-life of an event's weight, counted in the user's later events.
    pub half_life: Option<f64>,
}

pub struct Content {
    params: ContentParams,
    dim: usize,
    /// `n_items × dim`, row `i` the unit vector of item `i`.
    vectors: std::sync::Arc<Vec<f32>>,
    /// `n_users × dim`.
    profiles: Vec<f32>,
}

impl Content {
    /// `vectors` holds one row of `dim` floats per item of `train`'s index space.
    pub fn fit(
        train: &Interactions,
        vectors: std::sync::Arc<Vec<f32>>,
        dim: usize,
        params: ContentParams,
    ) -> Content {
        assert_eq!(vectors.len(), train.n_items() * dim, "one vector per item");
        let mut profiles = vec![0f32; train.n_users() * dim];
        for (u, profile) in profiles.chunks_exact_mut(dim).enumerate() {
            let history = train.user(u as u32);
            let n = history.len();
            for (pos, row) in history.iter().enumerate() {
                let weight = recency_weight(n - 1 - pos, params.half_life);
                let x = &vectors[row.item as usize * dim..][..dim];
                profile.iter_mut().zip(x).for_each(|(p, v)| *p += weight * v);
            }
        }
        Content { params, dim, vectors, profiles }
    }

    /// A profile from weighted vectors (stated interests, a guest's items), for
    /// [`Content::scores_for`].
    pub fn profile_of<'a>(&self, weighted: impl IntoIterator<Item = (&'a [f32], f32)>) -> Vec<f32> {
        let mut profile = vec![0f32; self.dim];
        for (x, weight) in weighted {
            profile.iter_mut().zip(x).for_each(|(p, v)| *p += weight * v);
        }
        profile
    }

    /// Every item's score against `profile`.
    pub fn scores_for(&self, profile: &[f32], out: &mut [f32]) {
        for (score, x) in out.iter_mut().zip(self.vectors.chunks_exact(self.dim)) {
            *score = shopgraph_embed::exact::dot(profile, x);
        }
    }

    /// Item `i`'s vector.
    pub fn vector(&self, item: u32) -> &[f32] {
        &self.vectors[item as usize * self.dim..][..self.dim]
    }
}

/// `0.5^(age / half_life)`, or 1 without a half-life.
pub(crate) fn recency_weight(age: usize, half_life: Option<f64>) -> f32 {
    half_life.map_or(1.0, |h| 0.5f64.powf(age as f64 / h) as f32)
}

impl Recommender for Content {
    fn name(&self) -> String {
        match self.params.half_life {
            Some(h) => format!("content: BERT profile (half-life {h} events)"),
            None => "content: BERT profile".into(),
        }
    }

    fn scores(&self, user: u32, out: &mut [f32]) {
        let profile = &self.profiles[user as usize * self.dim..][..self.dim];
        self.scores_for(profile, out);
    }

    fn scores_for_session(&self, session: &[u32], out: &mut [f32]) -> bool {
        let n = session.len();
        let profile =
            self.profile_of(session.iter().enumerate().map(|(pos, &i)| {
                (self.vector(i), recency_weight(n - 1 - pos, self.params.half_life))
            }));
        self.scores_for(&profile, out);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Content, ContentParams};
    use crate::{Interactions, Recommender};

    #[test]
    fn the_profile_leans_to_recent_items() {
        // Items a and b point along two axes, c between them but nearer to b.
        let data = Interactions::from_records(
            [("u", "a", 1), ("u", "b", 2), ("v", "c", 1)]
                .map(|(u, i, t)| (u.to_owned(), i.to_owned(), 1.0, t)),
        );
        let mut vectors = vec![0f32; 3 * 2];
        for (id, x) in [("a", [1.0, 0.0]), ("b", [0.0, 1.0]), ("c", [0.6, 0.8])] {
            let i = data.ids().item(id).unwrap() as usize;
            vectors[i * 2..i * 2 + 2].copy_from_slice(&x);
        }
        let vectors = Arc::new(vectors);
        let u = data.ids().user("u").unwrap();
        let c = data.ids().item("c").unwrap() as usize;
        let a = data.ids().item("a").unwrap() as usize;
        let mut scores = vec![0f32; 3];
        let uniform = Content::fit(&data, vectors.clone(), 2, ContentParams { half_life: None });
        uniform.scores(u, &mut scores);
        assert!((scores[c] - 1.4).abs() < 1e-6);
        assert!((scores[a] - 1.0).abs() < 1e-6);
        let recent = Content::fit(&data, vectors, 2, ContentParams { half_life: Some(1.0) });
        recent.scores(u, &mut scores);
        // a is one event old: weight 0.5.
        assert!((scores[a] - 0.5).abs() < 1e-6);
        assert!((scores[c] - (0.5 * 0.6 + 0.8)).abs() < 1e-6);
    }
}
