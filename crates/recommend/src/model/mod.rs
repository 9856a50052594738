//! Candidate generators. Each is fitted on a set of [`Interactions`] and then scores
//! every item for a user it was fitted with.
//!
//! [`Interactions`]: crate::Interactions

pub mod als;
pub mod bpr;
pub mod item_knn;
pub mod popularity;

pub use als::{Als, AlsParams};
pub use bpr::{Bpr, BprParams};
pub use item_knn::{ItemKnn, ItemKnnParams};
pub use popularity::{Popularity, PopularityParams};

/// A fitted model.
pub trait Recommender: Sync {
    /// The name and the hyperparameters it was fitted with, for the table.
    fn name(&self) -> String;

    /// A score for every item (`out.len()` is the number of items) for user `user`:
    /// higher is better; only the order matters.
    fn scores(&self, user: u32, out: &mut [f32]);

    /// Whether [`Recommender::predict`] predicts ratings on the data's scale.
    fn predicts_ratings(&self) -> bool {
        false
    }

    /// The predicted rating of `item` by `user`.
    fn predict(&self, user: u32, item: u32) -> f32 {
        let _ = (user, item);
        f32::NAN
    }
}

/// Dot product in eight lanes (vectorises; a plain sum may not be reordered).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0f32; LANES];
    let (a_main, a_rest) = a.split_at(a.len() / LANES * LANES);
    let (b_main, b_rest) = b.split_at(a_main.len());
    for (x, y) in a_main.chunks_exact(LANES).zip(b_main.chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    acc.iter().sum::<f32>() + a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum::<f32>()
}
