//! Why a product fits a shopper: the best paths from the user to the product, each
//! rendered in words ("you rated 3 books by J. R. R. Tolkien; this is by J. R. R.
//! Tolkien").
//!
//! The paths considered, strongest kinds first:
//! - the user stated or showed an interest in something the product has
//!   (user → interest target ← product);
//! - the user liked products that share a maker, publisher, category, attribute or a
//!   knowledge-graph neighbour with it (user → product′ → shared ← product), grouped by
//!   the shared node so the sentence can count them;
//! - the user already interacted with the product itself.
//!
//! Shared nodes are weighted by rarity (ln(N / degree), N the products): sharing an author says more
//! than sharing a decade. Hubs never explain anything (see [`crate::query`]).

use rustc_hash::FxHashMap as HashMap;

use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;
use shopgraph_core::{ProductId, UserId};

use crate::build::{KnowledgeGraph, likes};
use crate::model::{EdgeDetail, MakerKindKey, NodeKey, Relation, kind_bits};
use crate::query::{Budget, Hops, Limits, QueryError, Step, check};

/// One reason, with the path behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    pub score: f32,
    /// From the user to the product.
    pub path: Vec<Step>,
    /// How many of the user's products share the node this path goes through.
    pub support: usize,
    pub text: String,
}

/// The user's products considered, at most: the strongest interactions first.
const MAX_USER_ITEMS: usize = 2_000;

struct Group {
    score: f32,
    /// The user's products in the group: node, interaction strength, kinds, steps to the
    /// shared node.
    items: Vec<(NodeIndex, f32, u16, Hops)>,
}

impl KnowledgeGraph {
    /// The `k` best explanations of `product` for `user`, best first; empty when the
    /// graph knows nothing that links them.
    pub fn explain(
        &self,
        user: UserId,
        product: ProductId,
        k: usize,
        limits: &Limits,
    ) -> Result<Vec<Explanation>, QueryError> {
        check("k", k, limits.max_results)?;
        let user_node = self.index_of(&NodeKey::User(user))?;
        let target = self.index_of(&NodeKey::Product(product))?;
        let mut budget = Budget::new(limits);
        let target_features = self.feature_map(target, limits);
        let mut out = Vec::new();

        // Stated interests, and interactions with the product itself.
        for edge in self.graph.edges_directed(user_node, Direction::Outgoing) {
            match &edge.weight().detail {
                EdgeDetail::Interest { polarity, .. } if likes(*polarity) => {
                    let interest = edge.target();
                    let Some((weight, steps)) = target_features.get(&interest) else { continue };
                    let mut path =
                        vec![self.step(user_node, Relation::InterestedIn, interest, true)];
                    path.extend(self.back_to(target, steps));
                    let text = format!(
                        "you told us you like {}; {}",
                        self.graph[interest].label,
                        self.relation_phrase(target, steps)
                    );
                    out.push(Explanation {
                        score: 2.0 * weight * edge.weight().weight.max(0.1),
                        path,
                        support: 1,
                        text,
                    });
                }
                EdgeDetail::Interaction { kinds, rating, .. }
                    if edge.target() == target && self.liked(*rating) =>
                {
                    let path = vec![self.step(user_node, Relation::Interacted, target, true)];
                    let text = format!("you {} this before", verb(*kinds));
                    out.push(Explanation { score: 0.5, path, support: 1, text });
                }
                _ => {}
            }
        }

        // Liked products that share something with this one, grouped by what they share.
        let liked: HashMap<NodeIndex, (f32, u16)> = self
            .graph
            .edges_directed(user_node, Direction::Outgoing)
            .filter_map(|e| match e.weight().detail {
                EdgeDetail::Interaction { kinds, rating, .. }
                    if e.target() != target && self.liked(rating) =>
                {
                    Some((e.target(), (e.weight().weight, kinds)))
                }
                _ => None,
            })
            .collect();
        self.shared(
            Some(user_node),
            &liked,
            target,
            &target_features,
            limits,
            &mut budget,
            &mut out,
        )?;
        Ok(best(out, k))
    }

    /// The `k` best explanations of `product` for a set of products (a guest's session,
    /// a basket): what they share with it, as for a user's liked products. Paths start
    /// at one of the given products.
    pub fn explain_for_products(
        &self,
        products: &[ProductId],
        product: ProductId,
        k: usize,
        limits: &Limits,
    ) -> Result<Vec<Explanation>, QueryError> {
        check("k", k, limits.max_results)?;
        check("products", products.len(), limits.max_results)?;
        let target = self.index_of(&NodeKey::Product(product))?;
        let mut liked: HashMap<NodeIndex, (f32, u16)> = HashMap::default();
        for p in products {
            let node = self.index_of(&NodeKey::Product(*p))?;
            if node != target {
                liked.insert(node, (1.0, kind_bits::VIEW));
            }
        }
        let target_features = self.feature_map(target, limits);
        let mut budget = Budget::new(limits);
        let mut out = Vec::new();
        self.shared(None, &liked, target, &target_features, limits, &mut budget, &mut out)?;
        Ok(best(out, k))
    }

    /// Explanations through nodes the `liked` products share with the target, grouped
    /// by the shared node. Two ways to find them: from each liked product out to its
    /// features, or from each of the target's (few, rare) features back to the products
    /// that have them. A reader with 10,000 ratings is cheap from the target's side; a
    /// reader with three, from their own. Both find the same groups, except that the walk
    /// from the reader's side looks at their 2,000 strongest products only.
    #[allow(clippy::too_many_arguments, reason = "one private step of explain, not an API")]
    fn shared(
        &self,
        user: Option<NodeIndex>,
        liked: &HashMap<NodeIndex, (f32, u16)>,
        target: NodeIndex,
        target_features: &HashMap<NodeIndex, (f32, Hops)>,
        limits: &Limits,
        budget: &mut Budget,
        out: &mut Vec<Explanation>,
    ) -> Result<(), QueryError> {
        let from_target: usize =
            target_features.keys().map(|f| self.graph[*f].degree as usize).sum();
        let mut groups: HashMap<NodeIndex, Group> = HashMap::default();
        if from_target < liked.len() * 8 {
            'features: for (feature, (_, steps)) in target_features {
                for (holder, via) in self.holders(*feature, steps, limits) {
                    if !budget.tick()? {
                        break 'features;
                    }
                    if let Some((strength, kinds)) = liked.get(&holder) {
                        let item_steps = match via {
                            None => vec![(*feature, steps[0].1, true)],
                            Some((entity, relation, forward)) => {
                                vec![
                                    (entity, Relation::LinkedTo, true),
                                    (*feature, relation, forward),
                                ]
                            }
                        };
                        let group = groups
                            .entry(*feature)
                            .or_insert(Group { score: 0.0, items: Vec::new() });
                        group.items.push((holder, *strength, *kinds, item_steps));
                    }
                }
            }
        } else {
            let mut items: Vec<(NodeIndex, f32, u16)> =
                liked.iter().map(|(n, (s, k))| (*n, *s, *k)).collect();
            items.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            items.truncate(MAX_USER_ITEMS);
            'items: for (item, strength, kinds) in items {
                for (feature, _, steps) in self.features(item, limits) {
                    if !budget.tick()? {
                        break 'items;
                    }
                    if target_features.contains_key(&feature) {
                        let group = groups
                            .entry(feature)
                            .or_insert(Group { score: 0.0, items: Vec::new() });
                        group.items.push((item, strength, kinds, steps));
                    }
                }
            }
        }
        for (feature, group) in &mut groups {
            // Strongest first, and diminishing returns: the tenth book by one author adds
            // less than the second. Sorted first, so the score does not depend on the
            // order the items were found in.
            group.items.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            // A product reaching the shared node by two paths (an actor who also directed)
            // counts once.
            group.items.dedup_by_key(|item| item.0);
            let weight = target_features[feature].0;
            group.score = group
                .items
                .iter()
                .enumerate()
                .map(|(i, item)| weight * (1.0 + item.1).ln() / (1.0 + i as f32).sqrt())
                .sum();
        }
        for (feature, group) in groups {
            let (weight, target_steps) = &target_features[&feature];
            let (item, _, kinds, item_steps) = group
                .items
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                .expect("a group has items");
            let mut path = match user {
                Some(user) => vec![self.step(user, Relation::Interacted, *item, true)],
                None => Vec::new(),
            };
            let mut at = *item;
            for (next, relation, forward) in item_steps {
                path.push(self.step(at, *relation, *next, *forward));
                at = *next;
            }
            path.extend(self.back_to(target, target_steps));
            let n = group.items.len();
            let seen = if n == 1 {
                format!("you {} {}", verb(*kinds), self.graph[*item].label)
            } else {
                // The verb must be true of every product counted: what they all share.
                let common = group.items.iter().fold(u16::MAX, |acc, i| acc & i.2);
                format!(
                    "you {} {n} {} {}",
                    verb(common),
                    self.plural(*item),
                    self.share_phrase(feature, item_steps)
                )
            };
            let text = format!("{seen}; {}", self.relation_phrase(target, target_steps));
            out.push(Explanation {
                score: group.score * weight.max(0.01).sqrt(),
                path,
                support: n,
                text,
            });
        }
        Ok(())
    }

    /// The target's features by node: weight, and the steps from the target to it.
    fn feature_map(&self, target: NodeIndex, limits: &Limits) -> HashMap<NodeIndex, (f32, Hops)> {
        self.features(target, limits)
            .into_iter()
            .map(|(node, weight, steps)| (node, (weight, steps)))
            .collect()
    }

    /// The steps from a shared node back to the product that has it, given the steps
    /// from the product out to the node.
    fn back_to(&self, product: NodeIndex, steps: &[(NodeIndex, Relation, bool)]) -> Vec<Step> {
        let mut nodes = vec![product];
        nodes.extend(steps.iter().map(|s| s.0));
        let mut out = Vec::with_capacity(steps.len());
        for (i, (node, relation, forward)) in steps.iter().enumerate().rev() {
            out.push(self.step(*node, *relation, nodes[i], !*forward));
        }
        out
    }

    /// "this is by X", "this is published by X", "this is in X", "this also has X", "this shares a film actor, X".
    fn relation_phrase(&self, product: NodeIndex, steps: &[(NodeIndex, Relation, bool)]) -> String {
        let _ = product;
        let (node, relation, _) = steps.last().expect("a feature is at least one step away");
        let label = &self.graph[*node].label;
        match relation {
            Relation::MadeBy => match self.graph[*node].key {
                NodeKey::Maker(MakerKindKey::Brand, _) => format!("this is made by {label}"),
                _ => format!("this is by {label}"),
            },
            Relation::PublishedBy => format!("this is published by {label}"),
            Relation::InCategory => format!("this is in {label}"),
            Relation::HasAttribute => match label.strip_prefix("year:") {
                Some(decade) => format!("this is also from the {decade}"),
                None => format!("this also has {}", attribute_words(label)),
            },
            Relation::Kg(_) => {
                format!("this shares {} {label}", kg_words(self.relation_label(*relation)))
            }
            other => format!("this is {} {label}", other.name()),
        }
    }

    /// "by X", "from X", "in X", "with X", "sharing a film actor, X" for counted items.
    fn share_phrase(&self, feature: NodeIndex, steps: &[(NodeIndex, Relation, bool)]) -> String {
        let label = &self.graph[feature].label;
        match steps.last().map(|s| s.1) {
            Some(Relation::MadeBy) => format!("by {label}"),
            Some(Relation::PublishedBy) => format!("from {label}"),
            Some(Relation::InCategory) => format!("in {label}"),
            Some(Relation::HasAttribute) => match label.strip_prefix("year:") {
                Some(decade) => format!("from the {decade}"),
                None => format!("with {}", attribute_words(label)),
            },
            Some(relation @ Relation::Kg(_)) => {
                format!("that share {} {label}", kg_words(self.relation_label(relation)))
            }
            _ => format!("linked to {label}"),
        }
    }

    /// "books", "movies" or "products", by the item's format attribute.
    fn plural(&self, item: NodeIndex) -> &'static str {
        let format = self.graph.edges_directed(item, Direction::Outgoing).find_map(|e| match &self
            .graph[e.target()]
        .key
        {
            NodeKey::Attribute(value) => value.strip_prefix("format:").map(str::to_owned),
            _ => None,
        });
        match format.as_deref() {
            Some("book") => "books",
            Some("movie") => "movies",
            _ => "products",
        }
    }
}

/// The `k` strongest explanations, ties broken by text so the order is stable.
fn best(mut out: Vec<Explanation>, k: usize) -> Vec<Explanation> {
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.text.cmp(&b.text)));
    out.truncate(k);
    out
}

fn verb(kinds: u16) -> &'static str {
    if kinds & kind_bits::PURCHASE != 0 {
        "bought"
    } else if kinds & kind_bits::REVIEW != 0 {
        "reviewed"
    } else if kinds & kind_bits::RATING != 0 {
        "rated"
    } else if kinds & kind_bits::ADD_TO_CART != 0 {
        "considered"
    } else {
        "looked at"
    }
}

/// `mount:L` → "mount L" (decades are worded by the caller).
fn attribute_words(value: &str) -> String {
    match value.split_once(':') {
        Some((name, v)) => format!("{} {v}", name.replace('_', " ")),
        None => value.to_owned(),
    }
}

/// `film.film.actor` → "a film actor"; `film.film.directed_by` → "a film directed by".
fn kg_words(relation: &str) -> String {
    let mut parts = relation.rsplit('.');
    let last = parts.next().unwrap_or(relation).replace('_', " ");
    let domain = parts.next().unwrap_or_default().replace('_', " ");
    if domain.is_empty() { format!("a {last}") } else { format!("a {domain} {last}") }
}
