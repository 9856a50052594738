//! Top-N for a shopper, with the rules a shop needs around any model: a range for N,
//! what may not be shown (already bought, out of stock, hidden, outside a category),
//! and a documented fallback for a shopper the model does not know.

use crate::data::Interactions;
use crate::eval::top_k;
use crate::model::Recommender;

/// The most results one call returns.
pub const MAX_N: usize = 100;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ServeError {
    #[error("n must be between 1 and {MAX_N}, got {0}")]
    BadN(usize),
    #[error("unknown item {0:?}")]
    UnknownItem(String),
}

/// Why a list came out as it did: the shop shows it, the API returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The model, for a user it was fitted with.
    Personal,
    /// The fallback model (popularity), for a user the model does not know.
    Fallback,
}

/// A model with its fallback and the history it excludes.
pub struct Server<'a> {
    model: &'a dyn Recommender,
    fallback: &'a dyn Recommender,
    history: &'a Interactions,
}

impl<'a> Server<'a> {
    pub fn new(
        model: &'a dyn Recommender,
        fallback: &'a dyn Recommender,
        history: &'a Interactions,
    ) -> Server<'a> {
        Server { model, fallback, history }
    }

    /// The user's index, if the history knows them.
    pub fn user(&self, external: &str) -> Option<u32> {
        self.history.ids().user(external)
    }

    /// The item's index, or an error naming it.
    pub fn item(&self, external: &str) -> Result<u32, ServeError> {
        self.history
            .ids()
            .item(external)
            .ok_or_else(|| ServeError::UnknownItem(external.to_owned()))
    }

    /// The best `n` items for `user` (`None`: a shopper the model does not know, who
    /// gets the fallback's list) that `allowed` admits; with `exclude_seen`, nothing
    /// the user already interacted with.
    pub fn top_n(
        &self,
        user: Option<u32>,
        n: usize,
        exclude_seen: bool,
        allowed: impl Fn(u32) -> bool,
    ) -> Result<(Vec<u32>, Source), ServeError> {
        if n == 0 || n > MAX_N {
            return Err(ServeError::BadN(n));
        }
        let mut scores = vec![0f32; self.history.n_items()];
        let source = match user {
            Some(u) if (u as usize) < self.history.n_users() => {
                self.model.scores(u, &mut scores);
                if exclude_seen {
                    for r in self.history.user(u) {
                        scores[r.item as usize] = f32::NEG_INFINITY;
                    }
                }
                Source::Personal
            }
            _ => {
                self.fallback.scores(0, &mut scores);
                Source::Fallback
            }
        };
        for (i, s) in scores.iter_mut().enumerate() {
            if !allowed(i as u32) {
                *s = f32::NEG_INFINITY;
            }
        }
        Ok((top_k(&scores, n), source))
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_N, ServeError, Server, Source};
    use crate::data::Interactions;
    use crate::model::{ItemKnn, ItemKnnParams, Popularity, PopularityParams};

    fn data() -> Interactions {
        let mut records = Vec::new();
        for u in 0..6 {
            for i in 0..4 {
                if (u + i) % 5 != 0 {
                    records.push((format!("u{u}"), format!("i{i}"), 1.0, i64::from(i)));
                }
            }
        }
        records.push(("u0".into(), "i9".into(), 1.0, 9));
        Interactions::from_records(records)
    }

    #[test]
    fn filters_fallback_and_bad_n() {
        let data = data();
        let knn = ItemKnn::fit(&data, ItemKnnParams { neighbours: 10, shrink: 0.0 });
        let popular = Popularity::fit(&data, PopularityParams { half_life_days: None });
        let server = Server::new(&knn, &popular, &data);
        let u1 = server.user("u1").unwrap();
        let seen: Vec<u32> = data.user(u1).iter().map(|r| r.item).collect();

        let (list, source) = server.top_n(Some(u1), 10, true, |_| true).unwrap();
        assert_eq!(source, Source::Personal);
        assert!(list.iter().all(|i| !seen.contains(i)), "seen items are excluded");
        let (with_seen, _) = server.top_n(Some(u1), 10, false, |_| true).unwrap();
        assert!(with_seen.iter().any(|i| seen.contains(i)), "unless the shop says not to");

        // Out of stock / hidden / other category: whatever `allowed` refuses.
        let i9 = server.item("i9").unwrap();
        let (list, _) = server.top_n(Some(u1), 10, true, |i| i != i9).unwrap();
        assert!(!list.contains(&i9));

        // An unknown shopper gets the most popular items, and is told so.
        assert_eq!(server.user("stranger"), None);
        let (list, source) = server.top_n(None, 2, true, |_| true).unwrap();
        assert_eq!(source, Source::Fallback);
        let counts = data.item_counts();
        assert!(counts[list[0] as usize] >= counts[list[1] as usize]);

        assert_eq!(server.top_n(Some(u1), 0, true, |_| true), Err(ServeError::BadN(0)));
        assert_eq!(server.top_n(Some(u1), MAX_N + 1, true, |_| true), Err(ServeError::BadN(101)));
        assert_eq!(server.item("nope"), Err(ServeError::UnknownItem("nope".into())));
    }
}
