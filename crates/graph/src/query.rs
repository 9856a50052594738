//! Bounded queries for the rest of the platform and for support agents.
//!
//! Every query takes [`Limits`] (hops, results, work, time) and checks its arguments
//! against them before it starts, so no request can walk the whole graph. Hubs (nodes
//! with more edges than [`Limits::hub_degree`], like the category every book is in) are
//! reported but never walked through: "both are books" explains nothing and costs a
//! scan of the catalog.

use std::collections::VecDeque;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::time::{Duration, Instant};

use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;
use shopgraph_core::interest::{InterestSource, Polarity};
use shopgraph_core::{ProductId, UserId};

use crate::build::KnowledgeGraph;
use crate::model::{EdgeDetail, NodeKey, Relation, kind_bits};

/// One step out: the node it reaches, by which relation, forwards or not.
pub(crate) type Hop = (NodeIndex, Relation, bool);

/// Steps out from a product, one after the other.
pub(crate) type Hops = Vec<Hop>;

/// Bounds on one query.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_hops: usize,
    pub max_results: usize,
    /// Nodes or edges a query may look at before it stops with what it has.
    pub max_visited: usize,
    /// Nodes with more edges than this are not walked through.
    pub hub_degree: u32,
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        // A hub at 2,000: a publisher of thousands of books is weak evidence and the
        // costliest node to walk back from.
        Limits {
            max_hops: 4,
            max_results: 1_000,
            max_visited: 200_000,
            hub_degree: 2_000,
            timeout: Duration::from_millis(200),
        }
    }
}

/// Why a query was refused or stopped.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("no such node: {0}")]
    UnknownNode(String),
    #[error("{what} {asked} is over the limit of {max}")]
    TooBig { what: &'static str, asked: usize, max: usize },
    #[error("the query ran past its {0:?} time limit")]
    Timeout(Duration),
}

/// One step of a path: an edge, walked forwards (from its source) or backwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub from: NodeKey,
    pub relation: Relation,
    pub to: NodeKey,
    /// True when the edge points from `from` to `to`.
    pub forward: bool,
}

/// A neighbour and the edge that leads to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbour {
    pub key: NodeKey,
    pub label: String,
    pub relation: Relation,
    /// The imported relation's name for `Relation::Kg`, else the relation's own.
    pub relation_name: String,
    pub forward: bool,
    pub weight: f32,
}

/// A product like another, and the shared nodes that make it so.
#[derive(Clone, Debug, PartialEq)]
pub struct Similar {
    pub product: ProductId,
    pub title: String,
    pub score: f32,
    /// Labels of the shared nodes, strongest first.
    pub shared: Vec<String>,
}

/// One interest on a profile, and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileInterest {
    pub target: NodeKey,
    pub label: String,
    pub weight: f32,
    pub polarity: Polarity,
    pub source: InterestSource,
    pub at: i64,
}

/// A deadline and a work counter, checked as a query runs.
pub(crate) struct Budget {
    deadline: Instant,
    timeout: Duration,
    visited: usize,
    max_visited: usize,
}

impl Budget {
    pub(crate) fn new(limits: &Limits) -> Budget {
        Budget {
            deadline: Instant::now() + limits.timeout,
            timeout: limits.timeout,
            visited: 0,
            max_visited: limits.max_visited,
        }
    }

    /// Counts one unit of work. False when the work budget is spent (stop, keep what
    /// you have); an error when the time is.
    pub(crate) fn tick(&mut self) -> Result<bool, QueryError> {
        self.visited += 1;
        if self.visited.is_multiple_of(1024) && Instant::now() > self.deadline {
            return Err(QueryError::Timeout(self.timeout));
        }
        Ok(self.visited <= self.max_visited)
    }
}

/// A node a product shares with others, its weight, and the steps to it.
pub(crate) type Feature = (NodeIndex, f32, Hops);

pub(crate) fn check(what: &'static str, asked: usize, max: usize) -> Result<(), QueryError> {
    if asked > max {
        return Err(QueryError::TooBig { what, asked, max });
    }
    Ok(())
}

impl KnowledgeGraph {
    pub(crate) fn index_of(&self, key: &NodeKey) -> Result<NodeIndex, QueryError> {
        self.index.get(key).copied().ok_or_else(|| QueryError::UnknownNode(key.to_string()))
    }

    pub(crate) fn is_hub(&self, node: NodeIndex, limits: &Limits) -> bool {
        self.graph[node].degree > limits.hub_degree
    }

    /// Edges of `node` in both directions, as (neighbour, relation, forward, edge weight).
    pub(crate) fn incident(
        &self,
        node: NodeIndex,
    ) -> impl Iterator<Item = (NodeIndex, &crate::build::Edge, bool)> {
        self.graph
            .edges_directed(node, Direction::Outgoing)
            .map(|e| (e.target(), e.weight(), true))
            .chain(
                self.graph
                    .edges_directed(node, Direction::Incoming)
                    .map(|e| (e.source(), e.weight(), false)),
            )
    }

    /// True when an edge of `relation` joins `from` and `to` in the stated direction.
    pub fn has_edge(
        &self,
        from: &NodeKey,
        to: &NodeKey,
        relation: Relation,
        forward: bool,
    ) -> bool {
        let (Some(&a), Some(&b)) = (self.index.get(from), self.index.get(to)) else { return false };
        let (source, target) = if forward { (a, b) } else { (b, a) };
        self.graph.edges_connecting(source, target).any(|e| e.weight().relation == relation)
    }

    /// Neighbours of a node, strongest edges first, optionally of one relation.
    pub fn neighbours(
        &self,
        key: &NodeKey,
        relation: Option<Relation>,
        limit: usize,
        limits: &Limits,
    ) -> Result<Vec<Neighbour>, QueryError> {
        check("limit", limit, limits.max_results)?;
        let node = self.index_of(key)?;
        let mut budget = Budget::new(limits);
        let mut out = Vec::new();
        for (other, edge, forward) in self.incident(node) {
            if !budget.tick()? {
                break;
            }
            if relation.is_some_and(|r| r.name() != edge.relation.name()) {
                continue;
            }
            out.push(Neighbour {
                key: self.graph[other].key.clone(),
                label: self.graph[other].label.clone(),
                relation: edge.relation,
                relation_name: self.relation_label(edge.relation).to_owned(),
                forward,
                weight: edge.weight,
            });
        }
        out.sort_by(|a, b| b.weight.total_cmp(&a.weight).then_with(|| a.key.cmp(&b.key)));
        out.truncate(limit);
        Ok(out)
    }

    /// Nodes within `hops` of a node, nearest first, with their distance. Hubs are
    /// reached but not walked through.
    pub fn k_hop(
        &self,
        key: &NodeKey,
        hops: usize,
        limit: usize,
        limits: &Limits,
    ) -> Result<Vec<(NodeKey, usize)>, QueryError> {
        check("hops", hops, limits.max_hops)?;
        check("limit", limit, limits.max_results)?;
        let start = self.index_of(key)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut budget = Budget::new(limits);
        let mut seen: HashSet<NodeIndex> = std::iter::once(start).collect();
        let mut queue = VecDeque::from([(start, 0)]);
        let mut out = Vec::new();
        'walk: while let Some((node, distance)) = queue.pop_front() {
            if distance == hops || (node != start && self.is_hub(node, limits)) {
                continue;
            }
            for (other, _, _) in self.incident(node) {
                if !budget.tick()? {
                    break 'walk;
                }
                if seen.insert(other) {
                    out.push((self.graph[other].key.clone(), distance + 1));
                    if out.len() == limit {
                        break 'walk;
                    }
                    queue.push_back((other, distance + 1));
                }
            }
        }
        Ok(out)
    }

    /// What a product is, as weighted nodes it shares with others: its maker, publisher,
    /// categories and attribute values, and the entities its knowledge-graph entity is
    /// related to. Each comes with the steps from the product to it. Rare nodes weigh
    /// more than common ones (ln(N / degree)); hubs and near-universal nodes are left out.
    pub(crate) fn features(&self, product: NodeIndex, limits: &Limits) -> Vec<Feature> {
        let mut out = Vec::new();
        for edge in self.graph.edges_directed(product, Direction::Outgoing) {
            let relation = edge.weight().relation;
            let target = edge.target();
            match relation {
                Relation::MadeBy
                | Relation::PublishedBy
                | Relation::InCategory
                | Relation::HasAttribute
                    if !self.is_hub(target, limits) && self.rarity(target) >= Self::MIN_RARITY =>
                {
                    let strength = if relation == Relation::MadeBy { 1.5 } else { 1.0 };
                    out.push((
                        target,
                        strength * self.rarity(target),
                        vec![(target, relation, true)],
                    ));
                }
                Relation::LinkedTo => {
                    for (other, kg_edge, forward) in self.incident(target) {
                        if matches!(kg_edge.relation, Relation::Kg(_))
                            && !self.is_hub(other, limits)
                            && self.rarity(other) >= Self::MIN_RARITY
                        {
                            let steps = vec![
                                (target, Relation::LinkedTo, true),
                                (other, kg_edge.relation, forward),
                            ];
                            out.push((other, 0.8 * self.rarity(other), steps));
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// How much sharing `node` says: its inverse document frequency over the catalog,
    /// ln(N / degree). A decade half the catalog shares says little; a node every
    /// product has (the root category, `format:book`) says nothing.
    /// The products that have `feature` the way a product has it through `steps` (one
    /// step: the same relation; two: linked to an entity related to it), at most
    /// `limits.max_visited` of them. For the two-step way, each comes with the entity and
    /// the relation (and its direction) from the entity to the feature.
    pub(crate) fn holders(
        &self,
        feature: NodeIndex,
        steps: &[(NodeIndex, Relation, bool)],
        limits: &Limits,
    ) -> Vec<(NodeIndex, Option<Hop>)> {
        match steps {
            [(_, relation, _)] => self
                .graph
                .edges_directed(feature, Direction::Incoming)
                .filter(|e| e.weight().relation == *relation)
                .map(|e| (e.source(), None))
                .take(limits.max_visited)
                .collect(),
            _ => self
                .incident(feature)
                .filter(|(_, e, _)| matches!(e.relation, Relation::Kg(_)))
                .flat_map(|(entity, edge, forward)| {
                    self.graph
                        .edges_directed(entity, Direction::Incoming)
                        .filter(|e| e.weight().relation == Relation::LinkedTo)
                        .map(move |e| (e.source(), Some((entity, edge.relation, !forward))))
                })
                .take(limits.max_visited)
                .collect(),
        }
    }

    pub(crate) fn rarity(&self, node: NodeIndex) -> f32 {
        ((self.n_products as f32 + 1.0) / (self.graph[node].degree as f32 + 1.0)).ln().max(0.0)
    }

    /// Shared nodes weaker than this (in more than about 80% of products) are ignored.
    pub(crate) const MIN_RARITY: f32 = 0.2;

    /// Products that share the most (rarest) nodes with `product`.
    pub fn similar_products(
        &self,
        product: ProductId,
        k: usize,
        limits: &Limits,
    ) -> Result<Vec<Similar>, QueryError> {
        check("k", k, limits.max_results)?;
        let start = self.index_of(&NodeKey::Product(product))?;
        let mut budget = Budget::new(limits);
        let mut scores: HashMap<NodeIndex, (f32, Vec<(f32, NodeIndex)>)> = HashMap::default();
        'features: for (feature, weight, steps) in self.features(start, limits) {
            let holders = self.holders(feature, &steps, limits);
            for (holder, _) in holders {
                if !budget.tick()? {
                    break 'features;
                }
                if holder != start {
                    let entry = scores.entry(holder).or_default();
                    entry.0 += weight;
                    entry.1.push((weight, feature));
                }
            }
        }
        let mut ranked: Vec<_> = scores.into_iter().collect();
        ranked.sort_by(|a, b| {
            b.1.0.total_cmp(&a.1.0).then_with(|| self.graph[a.0].key.cmp(&self.graph[b.0].key))
        });
        ranked.truncate(k);
        Ok(ranked
            .into_iter()
            .filter_map(|(node, (score, mut shared))| {
                let NodeKey::Product(id) = self.graph[node].key else { return None };
                shared.sort_by(|a, b| b.0.total_cmp(&a.0));
                let mut labels: Vec<String> =
                    shared.into_iter().map(|(_, f)| self.graph[f].label.clone()).collect();
                labels.dedup();
                Some(Similar {
                    product: id,
                    title: self.graph[node].label.clone(),
                    score,
                    shared: labels,
                })
            })
            .collect())
    }

    /// What connects two nodes: up to `k` shortest paths of at most `hops` edges, in
    /// either direction, through distinct middle nodes.
    pub fn connect(
        &self,
        a: &NodeKey,
        b: &NodeKey,
        hops: usize,
        k: usize,
        limits: &Limits,
    ) -> Result<Vec<Vec<Step>>, QueryError> {
        check("hops", hops, limits.max_hops)?;
        check("k", k, limits.max_results)?;
        let (start, goal) = (self.index_of(a)?, self.index_of(b)?);
        if start == goal {
            return Ok(Vec::new());
        }
        let mut budget = Budget::new(limits);
        // Breadth-first from both ends; each side records how it reached each node.
        let mut sides = [
            ([(start, None)].into_iter().collect::<HashMap<_, _>>(), vec![start]),
            ([(goal, None)].into_iter().collect::<HashMap<_, _>>(), vec![goal]),
        ];
        let mut meetings: Vec<NodeIndex> = Vec::new();
        let mut depth = [0, 0];
        'search: while depth[0] + depth[1] < hops && meetings.is_empty() {
            let side = if sides[0].1.len() <= sides[1].1.len() { 0 } else { 1 };
            let frontier = std::mem::take(&mut sides[side].1);
            let mut next = Vec::new();
            for node in frontier {
                if node != start && node != goal && self.is_hub(node, limits) {
                    continue;
                }
                for (other, edge, forward) in self.incident(node) {
                    if !budget.tick()? {
                        break 'search;
                    }
                    if sides[side].0.contains_key(&other) {
                        continue;
                    }
                    sides[side].0.insert(other, Some((node, edge.relation, forward)));
                    next.push(other);
                    if sides[1 - side].0.contains_key(&other) && !meetings.contains(&other) {
                        meetings.push(other);
                    }
                }
            }
            depth[side] += 1;
            sides[side].1 = next;
            if sides[side].1.is_empty() {
                break;
            }
        }
        let mut paths = Vec::new();
        for middle in meetings.into_iter().take(k) {
            // From the start to the middle, then from the middle back to the goal.
            let mut steps = Vec::new();
            let mut node = middle;
            while let Some(Some((prev, relation, forward))) = sides[0].0.get(&node) {
                steps.push(self.step(*prev, *relation, node, *forward));
                node = *prev;
            }
            steps.reverse();
            let mut node = middle;
            while let Some(Some((prev, relation, forward))) = sides[1].0.get(&node) {
                // The goal side walked prev → node; the path walks node → prev.
                steps.push(self.step(node, *relation, *prev, !*forward));
                node = *prev;
            }
            paths.push(steps);
        }
        Ok(paths)
    }

    pub(crate) fn step(
        &self,
        from: NodeIndex,
        relation: Relation,
        to: NodeIndex,
        forward: bool,
    ) -> Step {
        Step {
            from: self.graph[from].key.clone(),
            relation,
            to: self.graph[to].key.clone(),
            forward,
        }
    }

    /// Customers who bought `bought` and rated `rated` at most `max_rating`.
    pub fn bought_and_rated_low(
        &self,
        bought: ProductId,
        rated: ProductId,
        max_rating: f32,
        limit: usize,
        limits: &Limits,
    ) -> Result<Vec<UserId>, QueryError> {
        check("limit", limit, limits.max_results)?;
        let mut budget = Budget::new(limits);
        let mut buyers = HashSet::default();
        for edge in self
            .graph
            .edges_directed(self.index_of(&NodeKey::Product(bought))?, Direction::Incoming)
        {
            if !budget.tick()? {
                break;
            }
            if let EdgeDetail::Interaction { kinds, .. } = edge.weight().detail
                && kinds & kind_bits::PURCHASE != 0
            {
                buyers.insert(edge.source());
            }
        }
        let mut out = Vec::new();
        for edge in
            self.graph.edges_directed(self.index_of(&NodeKey::Product(rated))?, Direction::Incoming)
        {
            if !budget.tick()? {
                break;
            }
            if let EdgeDetail::Interaction { rating: Some(r), .. } = edge.weight().detail
                && r <= max_rating
                && buyers.contains(&edge.source())
                && let NodeKey::User(user) = self.graph[edge.source()].key
            {
                out.push(user);
            }
        }
        out.sort();
        out.truncate(limit);
        Ok(out)
    }

    /// A customer's interests, strongest first, each with its source.
    pub fn profile(&self, user: UserId) -> Result<Vec<ProfileInterest>, QueryError> {
        let node = self.index_of(&NodeKey::User(user))?;
        let mut out: Vec<ProfileInterest> = self
            .graph
            .edges_directed(node, Direction::Outgoing)
            .filter_map(|e| match &e.weight().detail {
                EdgeDetail::Interest { id, polarity } => {
                    let origin = self.interests.get(id)?;
                    Some(ProfileInterest {
                        target: self.graph[e.target()].key.clone(),
                        label: self.graph[e.target()].label.clone(),
                        weight: e.weight().weight,
                        polarity: *polarity,
                        source: origin.source.clone(),
                        at: origin.at,
                    })
                }
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| b.weight.total_cmp(&a.weight).then_with(|| a.target.cmp(&b.target)));
        Ok(out)
    }
}
