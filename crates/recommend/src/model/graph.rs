//! Graph: items joined to the shopper's items by knowledge-graph paths.
//!
//! Each item is the set of entities it links to ([`ItemSide::links`]: categories,
//! maker, publisher, decade, knowledge-graph tails). An entity shared by `df(e)` of the
//! `n` items weighs `idf(e) = ln(n / df(e))`, so a director joins more than a genre
//! and the root category joins nothing. Two items are as similar as the cosine of
//! their IDF-weighted entity sets, that is the paths `j → e ← i` weighted by
//! `idf(e)²`, normalised by both items' lengths:
//!
//! ```text
//! sim(j, i) = Σ_{e ∈ E(j) ∩ E(i)} idf(e)² / (‖j‖ ‖i‖),   ‖i‖ = sqrt(Σ_{e ∈ E(i)} idf(e)²)
//! score(u, i) = Σ_{j ∈ H(u)} w_j sim(j, i)
//! ```
//!
//! with `w_j` the recency weight of [`content`](super::content). Propagating through an
//! entity vector `m_e = Σ_j w_j idf(e) / ‖j‖` makes a user cost one pass over the
//! history's edges and one over all items' edges. The best single path is the
//! result's explanation ([`Graph::best_path`]).

use std::sync::Arc;

use crate::data::Interactions;
use crate::model::Recommender;
use crate::model::content::recency_weight;
use crate::side::ItemSide;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GraphParams {
    /// Half-life of an event's weight, counted in the user's later events.
    pub half_life: Option<f64>,
}

pub struct Graph {
    params: GraphParams,
    side: Arc<ItemSide>,
    idf: Vec<f32>,
    /// `1 / ‖i‖`, 0 for an item that shares no entity with another.
    inverse_norm: Vec<f32>,
    histories: Interactions,
}

/// One path `j → (relation, entity) ← i` from a history item `j` to a result `i`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Path {
    pub from: u32,
    pub relation: u32,
    pub entity: u32,
    /// `w_j · idf(e)²`: how much the path says.
    pub weight: f32,
}

impl Graph {
    pub fn fit(train: &Interactions, side: Arc<ItemSide>, params: GraphParams) -> Graph {
        assert_eq!(side.n_items(), train.n_items(), "side information for every item");
        let mut df = vec![0u32; side.entities.len()];
        for links in &side.links {
            for &(_, e) in links {
                df[e as usize] += 1;
            }
        }
        let n = side.n_items().max(1) as f32;
        let idf: Vec<f32> =
            df.iter().map(|&d| if d < 2 { 0.0 } else { (n / d as f32).ln() }).collect();
        let inverse_norm = side
            .links
            .iter()
            .map(|links| {
                let norm: f32 = links.iter().map(|&(_, e)| idf[e as usize].powi(2)).sum();
                if norm > 0.0 { 1.0 / norm.sqrt() } else { 0.0 }
            })
            .collect();
        Graph { params, side, idf, inverse_norm, histories: train.clone() }
    }

    /// Scores every item for a weighted history (a user's, a guest's session).
    pub fn scores_for(&self, history: &[(u32, f32)], out: &mut [f32]) {
        let mut mass = vec![0f32; self.idf.len()];
        for &(j, w) in history {
            let scale = w * self.inverse_norm[j as usize];
            if scale == 0.0 {
                continue;
            }
            for &(_, e) in &self.side.links[j as usize] {
                mass[e as usize] += scale * self.idf[e as usize];
            }
        }
        for ((score, links), inv) in out.iter_mut().zip(&self.side.links).zip(&self.inverse_norm) {
            let sum: f32 =
                links.iter().map(|&(_, e)| mass[e as usize] * self.idf[e as usize]).sum();
            *score = sum * inv;
        }
    }

    /// The user's history with its recency weights.
    pub fn history(&self, user: u32) -> Vec<(u32, f32)> {
        let rows = self.histories.user(user);
        let n = rows.len();
        rows.iter()
            .enumerate()
            .map(|(pos, r)| (r.item, recency_weight(n - 1 - pos, self.params.half_life)))
            .collect()
    }

    /// A guest's session with its recency weights.
    pub fn session(&self, items: &[u32]) -> Vec<(u32, f32)> {
        let n = items.len();
        items
            .iter()
            .enumerate()
            .map(|(pos, &i)| (i, recency_weight(n - 1 - pos, self.params.half_life)))
            .collect()
    }

    /// The strongest single path from the history to `item`, if any entity joins them:
    /// the rarest shared entity (weighted by the history item's recency), without the
    /// items' norms, so that "the same director" beats "the same language" even where
    /// the language's item has few other edges.
    pub fn best_path(&self, history: &[(u32, f32)], item: u32) -> Option<Path> {
        let target = &self.side.links[item as usize];
        let mut best: Option<Path> = None;
        for &(j, w) in history {
            if j == item {
                continue;
            }
            for &(r, e) in &self.side.links[j as usize] {
                let idf = self.idf[e as usize];
                if idf == 0.0 || !target.contains(&(r, e)) {
                    continue;
                }
                let weight = w * idf * idf;
                if best.is_none_or(|b| weight > b.weight) {
                    best = Some(Path { from: j, relation: r, entity: e, weight });
                }
            }
        }
        best
    }

    pub fn side(&self) -> &Arc<ItemSide> {
        &self.side
    }
}

impl Recommender for Graph {
    fn name(&self) -> String {
        match self.params.half_life {
            Some(h) => format!("graph: KG paths (half-life {h} events)"),
            None => "graph: KG paths".into(),
        }
    }

    fn scores(&self, user: u32, out: &mut [f32]) {
        self.scores_for(&self.history(user), out);
    }

    fn scores_for_session(&self, session: &[u32], out: &mut [f32]) -> bool {
        self.scores_for(&self.session(session), out);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Graph, GraphParams};
    use crate::side::{Entity, ItemSide};
    use crate::{Interactions, Recommender};

    #[test]
    fn rare_shared_entities_join_more_than_common_ones() {
        // Items 0..4; entity 0 ("drama") on items 0..3, entity 1 (a director) on 0 and 2.
        let data = Interactions::from_records(
            [("u", "0"), ("v", "1"), ("v", "2"), ("v", "3")]
                .map(|(u, i)| (u.to_owned(), i.to_owned(), 1.0, 0)),
        );
        let item = |id: &str| data.ids().item(id).unwrap() as usize;
        let mut links = vec![Vec::new(); 4];
        for id in ["0", "1", "2"] {
            links[item(id)].push((0, 0));
        }
        links[item("0")].push((1, 1));
        links[item("2")].push((1, 1));
        let entity = |k: &str| Entity { key: k.into(), name: Some(k.into()) };
        let side = ItemSide {
            titles: vec![String::new(); 4],
            texts: vec![String::new(); 4],
            relations: vec!["category".into(), "maker".into()],
            entities: vec![entity("drama"), entity("someone")],
            links,
        };
        let graph = Graph::fit(&data, Arc::new(side), GraphParams { half_life: None });
        let mut scores = vec![0f32; 4];
        let u = data.ids().user("u").unwrap();
        graph.scores(u, &mut scores);
        assert!(scores[item("2")] > scores[item("1")], "{scores:?}");
        assert!(scores[item("1")] > 0.0);
        assert_eq!(scores[item("3")], 0.0, "no path to an item without entities");
        let path = graph.best_path(&graph.history(u), item("2") as u32).unwrap();
        assert_eq!((path.from, path.relation, path.entity), (item("0") as u32, 1, 1));
        assert!(graph.best_path(&graph.history(u), item("3") as u32).is_none());
    }
}
