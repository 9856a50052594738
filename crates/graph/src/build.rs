//! The graph and its updates. Every update is idempotent and order-independent where
//! the store's order is not fixed, so applying records as they arrive gives the same
//! graph as a rebuild from the store (a property test checks this).

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use petgraph::Direction;
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};
use shopgraph_core::event::{Event, EventKind};
use shopgraph_core::interest::{Interest, InterestSource, Polarity};
use shopgraph_core::kg::Triple;
use shopgraph_core::product::{Category, Maker, Product};
use shopgraph_core::segment::ProductRule;
use shopgraph_core::user::User;
use shopgraph_core::{InterestId, ProductId, SegmentId, UserId};

use crate::model::{EdgeDetail, MakerKindKey, NodeKey, Relation, kind_bits};

/// See [`KnowledgeGraph::counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraphCounts {
    pub products: i64,
    pub users: i64,
    pub interests: i64,
}

/// The knowledge graph. Build one with [`KnowledgeGraph::default`] and feed it records.
#[derive(Clone, Debug, Default)]
pub struct KnowledgeGraph {
    pub(crate) graph: StableDiGraph<Node, Edge>,
    pub(crate) index: HashMap<NodeKey, NodeIndex>,
    pub(crate) skus: HashMap<String, ProductId>,
    pub(crate) interests: HashMap<InterestId, InterestEdge>,
    /// The interaction edge of each (user, product) pair: found in O(1), not by
    /// scanning a heavy reader's thousands of edges for every event.
    pub(crate) interactions: HashMap<(NodeIndex, NodeIndex), EdgeIndex>,
    pub(crate) relation_names: Vec<String>,
    pub(crate) relation_ids: HashMap<String, u16>,
    /// The largest rating seen: ratings at or above 60% of it count as liking.
    pub(crate) max_rating: f32,
    /// The sequence number of the last event applied.
    pub(crate) last_seq: i64,
    /// Product nodes: the N of the inverse document frequency that weighs shared nodes.
    pub(crate) n_products: usize,
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) key: NodeKey,
    /// What to call it in an explanation: a title, a maker's name, a category's name.
    pub(crate) label: String,
    /// In plus out edges, kept up to date so hubs are recognised in O(1).
    pub(crate) degree: u32,
}

/// Where an interest edge is, and what it came from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InterestEdge {
    pub(crate) edge: EdgeIndex,
    pub(crate) source: InterestSource,
    pub(crate) at: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Edge {
    pub(crate) relation: Relation,
    pub(crate) weight: f32,
    pub(crate) detail: EdgeDetail,
}

/// How much each kind of event says about interest, summed on the interaction edge.
fn kind_weight(kind: EventKind) -> Option<(u16, f32)> {
    Some(match kind {
        EventKind::View => (kind_bits::VIEW, 1.0),
        EventKind::Click => (kind_bits::CLICK, 1.0),
        EventKind::AddToCart => (kind_bits::ADD_TO_CART, 3.0),
        EventKind::Purchase => (kind_bits::PURCHASE, 5.0),
        EventKind::Rating => (kind_bits::RATING, 4.0),
        EventKind::Review => (kind_bits::REVIEW, 4.0),
        // Not a statement about one product the shopper chose (a dismissal is one
        // against it: it becomes a dislike on the profile, not an interaction).
        EventKind::Search
        | EventKind::ChatMessage
        | EventKind::RecommendationShown
        | EventKind::Dismiss => return None,
    })
}

impl KnowledgeGraph {
    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }

    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// The sequence number of the last event applied: where to resume the event stream.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    pub fn contains(&self, key: &NodeKey) -> bool {
        self.index.contains_key(key)
    }

    pub fn label(&self, key: &NodeKey) -> Option<&str> {
        self.index.get(key).map(|i| self.graph[*i].label.as_str())
    }

    pub fn product_by_sku(&self, sku: &str) -> Option<ProductId> {
        self.skus.get(sku).copied()
    }

    /// How many products, users and interests the graph holds: compared with the
    /// store's counts, they reveal deletions a snapshot missed.
    pub fn counts(&self) -> GraphCounts {
        let mut counts =
            GraphCounts { interests: self.interests.len() as i64, ..GraphCounts::default() };
        for node in self.graph.node_weights() {
            match node.key {
                NodeKey::Product(_) => counts.products += 1,
                NodeKey::User(_) => counts.users += 1,
                _ => {}
            }
        }
        counts
    }

    /// Node counts per type and edge counts per relation, for `shopgraph graph stats`.
    pub fn stats(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for node in self.graph.node_weights() {
            let kind = match &node.key {
                NodeKey::Product(_) => "nodes: product",
                NodeKey::Category(_) => "nodes: category",
                NodeKey::Maker(MakerKindKey::Author, _) => "nodes: author",
                NodeKey::Maker(MakerKindKey::Brand, _) => "nodes: brand",
                NodeKey::Maker(MakerKindKey::Publisher, _) => "nodes: publisher",
                NodeKey::Attribute(_) => "nodes: attribute",
                NodeKey::User(_) => "nodes: user",
                NodeKey::Concept(_) => "nodes: concept",
                NodeKey::Segment(_) => "nodes: segment",
                NodeKey::Entity(_) => "nodes: entity",
            };
            *out.entry(kind.to_owned()).or_default() += 1;
        }
        for edge in self.graph.edge_weights() {
            *out.entry(format!("edges: {}", edge.relation.name())).or_default() += 1;
        }
        out
    }

    // --- updates --------------------------------------------------------------------

    /// Adds or renames a category and links it to its parent.
    pub fn upsert_category(&mut self, category: &Category) {
        let node = self.node(NodeKey::Category(category.key.clone()), Some(&category.name));
        self.remove_out_edges(node, |r| r == Relation::ChildOf);
        if let Some(parent) = &category.parent_key {
            let parent = self.node(NodeKey::Category(parent.clone()), None);
            self.add_edge(node, parent, Relation::ChildOf, 1.0, EdgeDetail::None);
        }
    }

    /// Adds a product or replaces what it is (makers, categories, attributes), keeping
    /// what shoppers did with it.
    pub fn upsert_product(&mut self, product: &Product) {
        let node = self.node(NodeKey::Product(product.id), Some(&product.title));
        if self.skus.insert(product.sku.clone(), product.id).is_none() {
            self.adopt_interests(&product.sku, node);
        }
        self.remove_out_edges(node, |r| {
            matches!(
                r,
                Relation::InCategory
                    | Relation::MadeBy
                    | Relation::PublishedBy
                    | Relation::HasAttribute
            )
        });
        if let Some(maker) = &product.maker {
            let m =
                self.node(NodeKey::Maker(maker.kind.into(), maker.key.clone()), Some(&maker.name));
            self.add_edge(node, m, Relation::MadeBy, 1.0, EdgeDetail::None);
        }
        if let Some(publisher) = &product.publisher {
            let p = self.node(
                NodeKey::Maker(publisher.kind.into(), publisher.key.clone()),
                Some(&publisher.name),
            );
            self.add_edge(node, p, Relation::PublishedBy, 1.0, EdgeDetail::None);
        }
        for category in &product.categories {
            let c = self.node(NodeKey::Category(category.clone()), None);
            self.add_edge(node, c, Relation::InCategory, 1.0, EdgeDetail::None);
        }
        for value in attribute_values(product) {
            let a = self.node(NodeKey::Attribute(value.clone()), Some(&value));
            self.add_edge(node, a, Relation::HasAttribute, 1.0, EdgeDetail::None);
        }
    }

    /// Adds or renames a maker. The store keeps makers even when no product names them
    /// any more, so a rebuild loads them all and labels match those of a live graph.
    pub fn upsert_maker(&mut self, maker: &Maker) {
        self.node(NodeKey::Maker(maker.kind.into(), maker.key.clone()), Some(&maker.name));
    }

    /// Moves the interests recorded on `product:SKU` before the product arrived from the
    /// concept that held them to the product, as a rebuild would have linked them.
    fn adopt_interests(&mut self, sku: &str, product: NodeIndex) {
        let Some(concept) = self.index.remove(&NodeKey::Concept(format!("product:{sku}"))) else {
            return;
        };
        let edges: Vec<EdgeIndex> =
            self.graph.edges_directed(concept, Direction::Incoming).map(|e| e.id()).collect();
        for edge in edges {
            let Some((user, _)) = self.graph.edge_endpoints(edge) else { continue };
            let weight = self.graph[edge].clone();
            self.remove_edge(edge);
            let moved =
                self.add_edge(user, product, weight.relation, weight.weight, weight.detail.clone());
            if let EdgeDetail::Interest { id, .. } = weight.detail
                && let Some(entry) = self.interests.get_mut(&id)
            {
                entry.edge = moved;
            }
        }
        self.graph.remove_node(concept);
    }

    pub fn upsert_user(&mut self, user: &User) {
        self.node(NodeKey::User(user.id), Some(&user.external_id));
    }

    /// Removes a user and every edge of theirs (after `Store::delete_user`).
    pub fn remove_user(&mut self, user: UserId) {
        let Some(node) = self.index.remove(&NodeKey::User(user)) else { return };
        let edges: Vec<(EdgeIndex, NodeIndex)> = self
            .graph
            .edges_directed(node, Direction::Outgoing)
            .map(|e| (e.id(), e.target()))
            .chain(
                self.graph.edges_directed(node, Direction::Incoming).map(|e| (e.id(), e.source())),
            )
            .collect();
        for (edge, other) in edges {
            match self.graph[edge].detail {
                EdgeDetail::Interest { id, .. } => {
                    self.interests.remove(&id);
                }
                EdgeDetail::Interaction { .. } => {
                    self.interactions.remove(&(node, other));
                }
                _ => {}
            }
            self.graph[other].degree -= 1;
        }
        self.graph.remove_node(node);
    }

    /// Applies one behaviour event. Events at or below [`Self::last_seq`] were applied
    /// already and are skipped, so replaying the stream from an old cursor is harmless.
    pub fn apply_event(&mut self, event: &Event) {
        if event.seq <= self.last_seq {
            return;
        }
        self.last_seq = event.seq;
        let (Some(product), Some((bit, weight))) = (event.product, kind_weight(event.kind)) else {
            return;
        };
        let user = self.node(NodeKey::User(event.user), None);
        let product = self.node(NodeKey::Product(product), None);
        let rating = match event.kind {
            EventKind::Rating | EventKind::Review => event.value.map(|v| v as f32),
            _ => None,
        };
        if let Some(r) = rating {
            self.max_rating = self.max_rating.max(r);
        }
        match self.interactions.get(&(user, product)).copied() {
            Some(edge) => {
                let edge = &mut self.graph[edge];
                edge.weight += weight;
                if let EdgeDetail::Interaction { kinds, rating: last_rating, count, last_at } =
                    &mut edge.detail
                {
                    *kinds |= bit;
                    *count += 1;
                    *last_at = (*last_at).max(event.occurred_at);
                    if rating.is_some() {
                        *last_rating = rating;
                    }
                }
            }
            None => {
                let detail = EdgeDetail::Interaction {
                    kinds: bit,
                    rating,
                    count: 1,
                    last_at: event.occurred_at,
                };
                let edge = self.add_edge(user, product, Relation::Interacted, weight, detail);
                self.interactions.insert((user, product), edge);
            }
        }
    }

    /// Records an interest as an edge from the user to the concept its subject names:
    /// `author:KEY`, `brand:KEY`, `publisher:KEY`, `category:KEY` and `product:SKU` (of a
    /// product the graph has) name those nodes; other `name:value` subjects name attribute
    /// values (`year:1990s`, `mount:L`); a subject without a `:` is a concept of its own.
    pub fn add_interest(&mut self, interest: &Interest) {
        self.remove_interest(interest.id);
        let user = self.node(NodeKey::User(interest.user), None);
        let target = self.subject_node(&interest.subject);
        let detail = EdgeDetail::Interest { id: interest.id, polarity: interest.polarity };
        let edge =
            self.add_edge(user, target, Relation::InterestedIn, interest.weight as f32, detail);
        self.interests.insert(
            interest.id,
            InterestEdge { edge, source: interest.source.clone(), at: interest.at },
        );
    }

    /// Removes an interest (an agent removed a wrong one). True when it was there.
    pub fn remove_interest(&mut self, id: InterestId) -> bool {
        let Some(entry) = self.interests.remove(&id) else { return false };
        self.remove_edge(entry.edge);
        true
    }

    /// Adds a triple of an imported knowledge graph (once; repeats are ignored).
    pub fn add_triple(&mut self, triple: &Triple) {
        let relation = self.intern_relation(&triple.relation);
        let head = self.node(NodeKey::Entity(triple.head.clone()), Some(&triple.head));
        let tail = self.node(NodeKey::Entity(triple.tail.clone()), Some(&triple.tail));
        if !self
            .graph
            .edges_connecting(head, tail)
            .any(|e| e.weight().relation == Relation::Kg(relation))
        {
            self.add_edge(head, tail, Relation::Kg(relation), 1.0, EdgeDetail::None);
        }
    }

    /// Links a product to a knowledge-graph entity (once).
    pub fn link_entity(&mut self, product: ProductId, entity: &str) {
        let product = self.node(NodeKey::Product(product), None);
        let entity = self.node(NodeKey::Entity(entity.to_owned()), Some(entity));
        if !self
            .graph
            .edges_connecting(product, entity)
            .any(|e| e.weight().relation == Relation::LinkedTo)
        {
            self.add_edge(product, entity, Relation::LinkedTo, 1.0, EdgeDetail::None);
        }
    }

    /// Replaces a segment's members.
    pub fn upsert_segment(
        &mut self,
        segment: SegmentId,
        description: &str,
        members: &[(UserId, f64)],
    ) {
        let node = self.node(NodeKey::Segment(segment), Some(description));
        // Only memberships: an interest in the segment is not this update's to remove.
        let old: Vec<EdgeIndex> = self
            .graph
            .edges_directed(node, Direction::Incoming)
            .filter(|e| e.weight().relation == Relation::MemberOf)
            .map(|e| e.id())
            .collect();
        for edge in old {
            self.remove_edge(edge);
        }
        for (user, score) in members {
            let user = self.node(NodeKey::User(*user), None);
            let detail = EdgeDetail::Scores { a: *score as f32, b: 0.0, c: 0.0 };
            self.add_edge(user, node, Relation::MemberOf, *score as f32, detail);
        }
    }

    /// Replaces every bought-together edge by the rules with one product on the left:
    /// an edge from it to each product on the right, weighted by the confidence and
    /// carrying (support, confidence, lift). Of two rules over one pair the more
    /// confident wins; products the graph does not hold are skipped.
    pub fn set_rules(&mut self, rules: &[ProductRule]) {
        let old: Vec<EdgeIndex> = self
            .graph
            .edge_references()
            .filter(|e| e.weight().relation == Relation::BoughtTogether)
            .map(|e| e.id())
            .collect();
        for edge in old {
            self.remove_edge(edge);
        }
        let mut best: BTreeMap<(NodeIndex, NodeIndex), &ProductRule> = BTreeMap::new();
        for rule in rules.iter().filter(|r| r.antecedent.len() == 1) {
            let Some(&from) = self.index.get(&NodeKey::Product(rule.antecedent[0])) else {
                continue;
            };
            for to in &rule.consequent {
                let Some(&to) = self.index.get(&NodeKey::Product(*to)) else { continue };
                let slot = best.entry((from, to)).or_insert(rule);
                if rule.confidence > slot.confidence {
                    *slot = rule;
                }
            }
        }
        for ((from, to), rule) in best {
            let detail = EdgeDetail::Scores {
                a: rule.support as f32,
                b: rule.confidence as f32,
                c: rule.lift as f32,
            };
            self.add_edge(from, to, Relation::BoughtTogether, rule.confidence as f32, detail);
        }
    }

    // --- internals ------------------------------------------------------------------

    /// The node for `key`, created if missing. A given label replaces the old one; a
    /// node created without one is labelled by its key until a record names it.
    pub(crate) fn node(&mut self, key: NodeKey, label: Option<&str>) -> NodeIndex {
        if let Some(&index) = self.index.get(&key) {
            if let Some(label) = label
                && self.graph[index].label != label
            {
                self.graph[index].label = label.to_owned();
            }
            return index;
        }
        let label = label.map(str::to_owned).unwrap_or_else(|| default_label(&key));
        self.n_products += usize::from(matches!(key, NodeKey::Product(_)));
        let index = self.graph.add_node(Node { key: key.clone(), label, degree: 0 });
        self.index.insert(key, index);
        index
    }

    fn add_edge(
        &mut self,
        from: NodeIndex,
        to: NodeIndex,
        relation: Relation,
        weight: f32,
        detail: EdgeDetail,
    ) -> EdgeIndex {
        self.graph[from].degree += 1;
        self.graph[to].degree += 1;
        self.graph.add_edge(from, to, Edge { relation, weight, detail })
    }

    fn remove_edge(&mut self, edge: EdgeIndex) {
        if let Some((from, to)) = self.graph.edge_endpoints(edge) {
            self.graph[from].degree -= 1;
            self.graph[to].degree -= 1;
            self.graph.remove_edge(edge);
        }
    }

    fn remove_out_edges(&mut self, node: NodeIndex, which: impl Fn(Relation) -> bool) {
        let edges: Vec<EdgeIndex> = self
            .graph
            .edges_directed(node, Direction::Outgoing)
            .filter(|e| which(e.weight().relation))
            .map(|e| e.id())
            .collect();
        for edge in edges {
            self.remove_edge(edge);
        }
    }

    fn subject_node(&mut self, subject: &str) -> NodeIndex {
        // The subject alone decides the node, never what the graph holds yet, so the
        // order of updates cannot matter. A product not in the graph yet is a concept
        // `product:SKU` until it arrives (`upsert_product` then moves the interest).
        // Nobody is interested in a user or a segment: such subjects are concepts too, so
        // an interest can never bring a deleted user back.
        let key = match subject.split_once(':') {
            Some(("product", sku)) => match self.skus.get(sku) {
                Some(id) => NodeKey::Product(*id),
                None => NodeKey::Concept(subject.to_owned()),
            },
            Some(("concept", rest)) if !rest.is_empty() => NodeKey::Concept(rest.to_owned()),
            Some((_, rest)) if !rest.is_empty() => match NodeKey::parse(subject) {
                Some(NodeKey::User(_) | NodeKey::Segment(_) | NodeKey::Product(_)) | None => {
                    NodeKey::Concept(subject.to_owned())
                }
                Some(key) => key,
            },
            _ => NodeKey::Concept(subject.to_owned()),
        };
        self.node(key, None)
    }

    fn intern_relation(&mut self, name: &str) -> u16 {
        if let Some(id) = self.relation_ids.get(name) {
            return *id;
        }
        let id = self.relation_names.len() as u16;
        self.relation_names.push(name.to_owned());
        self.relation_ids.insert(name.to_owned(), id);
        id
    }

    /// A relation's name: its own, or the imported name of a `Relation::Kg`.
    pub fn relation_name(&self, relation: Relation) -> &str {
        self.relation_label(relation)
    }

    pub(crate) fn relation_label(&self, relation: Relation) -> &str {
        match relation {
            Relation::Kg(id) => {
                self.relation_names.get(usize::from(id)).map_or("kg", String::as_str)
            }
            r => r.name(),
        }
    }

    /// True when `rating` (if any) says the user liked the product.
    pub(crate) fn liked(&self, rating: Option<f32>) -> bool {
        rating.is_none_or(|r| r >= 0.6 * self.max_rating)
    }

    /// A form of the graph that two graphs with the same content share, whatever the
    /// order of updates that built them: for tests.
    #[doc(hidden)]
    pub fn canonical(&self) -> (Vec<(String, String)>, Vec<String>) {
        let mut nodes: Vec<(String, String)> = self
            .graph
            .node_weights()
            .filter(|n| n.degree > 0 || matches!(n.key, NodeKey::Product(_) | NodeKey::User(_)))
            .map(|n| (n.key.to_string(), n.label.clone()))
            .collect();
        nodes.sort();
        let mut edges: Vec<String> = self
            .graph
            .edge_references()
            .map(|e| {
                let (from, to) = (&self.graph[e.source()].key, &self.graph[e.target()].key);
                let w = e.weight();
                let origin = match w.detail {
                    EdgeDetail::Interest { id, .. } => {
                        self.interests.get(&id).map(|i| (i.source.clone(), i.at))
                    }
                    _ => None,
                };
                format!(
                    "{from} -{}-> {to} {} {:?} {origin:?}",
                    self.relation_label(w.relation),
                    w.weight,
                    w.detail
                )
            })
            .collect();
        edges.sort();
        (nodes, edges)
    }
}

fn default_label(key: &NodeKey) -> String {
    match key {
        NodeKey::Category(k)
        | NodeKey::Maker(_, k)
        | NodeKey::Attribute(k)
        | NodeKey::Concept(k)
        | NodeKey::Entity(k) => k.clone(),
        other => other.to_string(),
    }
}

/// The attribute values of a product: its decade, and each scalar of its attributes.
fn attribute_values(product: &Product) -> Vec<String> {
    let mut values = Vec::new();
    if let Some(year) = product.year {
        values.push(format!("year:{}0s", year / 10));
    }
    if let Some(text) = &product.attributes
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text)
    {
        for (key, value) in map {
            // A key named like a kind of node (`author`, `category`, …) would print as that
            // node's name; such keys are the product's business, not attribute values.
            const NODE_KINDS: [&str; 10] = [
                "product",
                "sku",
                "user",
                "segment",
                "category",
                "author",
                "brand",
                "publisher",
                "entity",
                "concept",
            ];
            if NODE_KINDS.contains(&key.as_str()) {
                continue;
            }
            let value = match value {
                serde_json::Value::String(s) if !s.is_empty() && s.len() <= 80 => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            values.push(format!("{key}:{value}"));
        }
    }
    values.sort();
    values.dedup();
    values
}

/// True for polarity `Likes`.
pub(crate) fn likes(polarity: Polarity) -> bool {
    polarity == Polarity::Likes
}
