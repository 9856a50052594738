//! Interactions as dense indices: users `0..n_users`, items `0..n_items`, each
//! (user, item) pair once, with its rating and time.
//!
//! Every split of one data set shares one index space (the same user is the same
//! index in training and test), so a model trained on one part scores the other.

use std::collections::HashMap;
use std::sync::Arc;

use shopgraph_core::event::EventKind;
use shopgraph_import::Dataset;

/// One user's interaction with one item.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interaction {
    pub user: u32,
    pub item: u32,
    /// The explicit rating where there is one, else 1.
    pub rating: f32,
    /// Milliseconds since the epoch.
    pub time: i64,
}

/// The external ids behind the indices, shared by every split of a data set, and the
/// way back from an id to its index.
#[derive(Debug, Default)]
pub struct Ids {
    pub users: Vec<String>,
    pub items: Vec<String>,
    user_index: HashMap<String, u32>,
    item_index: HashMap<String, u32>,
}

impl Ids {
    pub fn user(&self, external: &str) -> Option<u32> {
        self.user_index.get(external).copied()
    }

    pub fn item(&self, external: &str) -> Option<u32> {
        self.item_index.get(external).copied()
    }

    fn intern(index: &mut HashMap<String, u32>, names: &mut Vec<String>, name: String) -> u32 {
        *index.entry(name).or_insert_with_key(|k| {
            names.push(k.clone());
            (names.len() - 1) as u32
        })
    }
}

/// A set of interactions, grouped by user (each user's in time order).
#[derive(Clone, Debug)]
pub struct Interactions {
    ids: Arc<Ids>,
    rows: Vec<Interaction>,
    /// `rows[starts[u]..starts[u + 1]]` are user `u`'s.
    starts: Vec<usize>,
}

impl Interactions {
    /// From (user, item, rating, time) records with external ids. A pair seen twice
    /// keeps its latest record.
    pub fn from_records(records: impl IntoIterator<Item = (String, String, f32, i64)>) -> Self {
        let mut ids = Ids::default();
        let mut latest: HashMap<(u32, u32), Interaction> = HashMap::new();
        for (user, item, rating, time) in records {
            let u = Ids::intern(&mut ids.user_index, &mut ids.users, user);
            let i = Ids::intern(&mut ids.item_index, &mut ids.items, item);
            let row = Interaction { user: u, item: i, rating, time };
            latest
                .entry((u, i))
                .and_modify(|old| {
                    if time >= old.time {
                        *old = row;
                    }
                })
                .or_insert(row);
        }
        Interactions::new(Arc::new(ids), latest.into_values().collect())
    }

    /// The rating and purchase events of an imported data set: explicit ratings keep
    /// their value (`explicit_only` drops the implicit ones, such as Book-Crossing's
    /// rating 0, which the importer reads as a view); purchases count 1.
    pub fn from_dataset(dataset: &Dataset, explicit_only: bool) -> Self {
        Interactions::from_records(dataset.events.iter().filter_map(|e| {
            let product = e.product.clone()?;
            let rating = match (e.kind, e.value) {
                (EventKind::Rating, Some(v)) => v as f32,
                (EventKind::Purchase, _) => 1.0,
                (EventKind::View | EventKind::Click | EventKind::AddToCart, _)
                    if !explicit_only =>
                {
                    1.0
                }
                _ => return None,
            };
            Some((e.user.clone(), product, rating, e.occurred_at))
        }))
    }

    /// Rows over an existing index space, in any order.
    pub fn new(ids: Arc<Ids>, mut rows: Vec<Interaction>) -> Self {
        rows.sort_unstable_by_key(|r| (r.user, r.time, r.item));
        let mut starts = vec![0; ids.users.len() + 1];
        for r in &rows {
            starts[r.user as usize + 1] += 1;
        }
        for u in 0..ids.users.len() {
            starts[u + 1] += starts[u];
        }
        Interactions { ids, rows, starts }
    }

    pub fn ids(&self) -> &Arc<Ids> {
        &self.ids
    }

    pub fn n_users(&self) -> usize {
        self.ids.users.len()
    }

    pub fn n_items(&self) -> usize {
        self.ids.items.len()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn rows(&self) -> &[Interaction] {
        &self.rows
    }

    /// User `u`'s interactions, oldest first.
    pub fn user(&self, u: u32) -> &[Interaction] {
        &self.rows[self.starts[u as usize]..self.starts[u as usize + 1]]
    }

    /// Each item's users, as lists indexed by item.
    pub fn item_users(&self) -> Vec<Vec<u32>> {
        let mut out = vec![Vec::new(); self.n_items()];
        for r in &self.rows {
            out[r.item as usize].push(r.user);
        }
        out
    }

    /// Interactions per item.
    pub fn item_counts(&self) -> Vec<u32> {
        let mut out = vec![0; self.n_items()];
        for r in &self.rows {
            out[r.item as usize] += 1;
        }
        out
    }

    /// The latest time in the set (0 when empty).
    pub fn last_time(&self) -> i64 {
        self.rows.iter().map(|r| r.time).max().unwrap_or(0)
    }

    /// Only the users and items with at least `k` interactions each, repeated until
    /// both hold (the "k-core"); indices are renumbered densely.
    pub fn k_core(&self, k: usize) -> Interactions {
        let mut keep: Vec<Interaction> = self.rows.clone();
        loop {
            let mut per_user = vec![0usize; self.n_users()];
            let mut per_item = vec![0usize; self.n_items()];
            for r in &keep {
                per_user[r.user as usize] += 1;
                per_item[r.item as usize] += 1;
            }
            let before = keep.len();
            keep.retain(|r| per_user[r.user as usize] >= k && per_item[r.item as usize] >= k);
            if keep.len() == before {
                break;
            }
        }
        let ids = &self.ids;
        Interactions::from_records(keep.into_iter().map(|r| {
            (
                ids.users[r.user as usize].clone(),
                ids.items[r.item as usize].clone(),
                r.rating,
                r.time,
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::Interactions;

    fn records(list: &[(&str, &str, f32, i64)]) -> Interactions {
        Interactions::from_records(
            list.iter().map(|&(u, i, r, t)| (u.to_owned(), i.to_owned(), r, t)),
        )
    }

    #[test]
    fn pairs_are_unique_and_users_in_time_order() {
        let data = records(&[("a", "x", 3.0, 5), ("a", "y", 4.0, 1), ("a", "x", 5.0, 9)]);
        assert_eq!(data.len(), 2);
        let a = data.user(0);
        assert_eq!(a[0].time, 1);
        assert_eq!((a[1].rating, a[1].time), (5.0, 9), "the latest record of a pair wins");
    }

    #[test]
    fn k_core_drops_until_stable() {
        // "c" rates only "z"; "z" then has one user left and goes too.
        let data = records(&[
            ("a", "x", 1.0, 1),
            ("a", "y", 1.0, 2),
            ("b", "x", 1.0, 3),
            ("b", "y", 1.0, 4),
            ("c", "z", 1.0, 5),
            ("a", "z", 1.0, 6),
        ]);
        let core = data.k_core(2);
        assert_eq!((core.n_users(), core.n_items(), core.len()), (2, 2, 4));
    }
}
