//! Candidate generators. Each is fitted on a set of [`Interactions`] and then scores
//! every item for a user it was fitted with (and, most of them, for a guest's session).
//!
//! - behaviour: [`popularity`], [`item_knn`], [`ease`], [`als`], [`bpr`]; ratings:
//!   [`rating`];
//! - what items are: [`content`] (BERT vectors), [`graph`] (knowledge-graph paths);
//! - order: [`fusion`] with ids only is the sequence generator (SASRec);
//! - the fusion model: [`fusion`] with BERT, graph and event kinds, and [`ranker`],
//!   which learns one score from all of them.
//!
//! [`Interactions`]: crate::Interactions

pub mod als;
pub mod bpr;
pub mod content;
pub mod ease;
pub mod fusion;
pub mod graph;
pub mod item_knn;
pub mod popularity;
pub mod ranker;
pub mod rating;

pub use als::{Als, AlsParams};
pub use bpr::{Bpr, BprParams};
pub use content::{Content, ContentParams};
pub use ease::{Ease, EaseParams};
pub use fusion::{Fusion, FusionParams, ItemFeatures, Objective};
pub use graph::{Graph, GraphParams};
pub use item_knn::{ItemKnn, ItemKnnParams};
pub use popularity::{Popularity, PopularityParams};
pub use ranker::{Ranker, RankerParams, RankerWeights};
pub use rating::{RatingMf, RatingParams};

/// A fitted model.
pub trait Recommender: Sync {
    /// The name and the hyperparameters it was fitted with, for the table.
    fn name(&self) -> String;

    /// A score for every item (`out.len()` is the number of items) for user `user`:
    /// higher is better; only the order matters.
    fn scores(&self, user: u32, out: &mut [f32]);

    /// Scores every item for a history the model was not fitted with (a guest's
    /// session), oldest first. Returns false where the model only knows its fitted
    /// users.
    fn scores_for_session(&self, session: &[u32], out: &mut [f32]) -> bool {
        let _ = (session, out);
        false
    }

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
