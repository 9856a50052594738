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
