//! Snapshots: the whole graph as bytes, so a server starts in seconds instead of
//! rebuilding from the store.
//!
//! Layout: the magic `SGKG`, the format version (u32), the payload's length (u64) and
//! CRC-32 (u32), then the payload (bincode). A file that is short, has the wrong magic,
//! another version, or a bad checksum is refused whole: the caller rebuilds from the
//! store, never uses half a graph. The caller's `stamp` (what the store looked like) and
//! [`KnowledgeGraph::last_seq`] travel with it, so a stale snapshot is caught up or
//! rebuilt.

use petgraph::visit::NodeIndexable;
use serde::{Deserialize, Serialize};
use shopgraph_core::interest::{InterestSource, Polarity};
use shopgraph_core::{InterestId, ProductId, SegmentId, UserId};

use crate::build::{Edge, InterestEdge, KnowledgeGraph, Node};
use crate::model::{EdgeDetail, MakerKindKey, NodeKey, Relation};

const MAGIC: &[u8; 4] = b"SGKG";
/// Bump when the payload's layout changes; older snapshots are then rebuilt.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 4 + 4 + 8 + 4;

/// Why a snapshot could not be used.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a shopgraph graph snapshot")]
    NotASnapshot,
    #[error("snapshot format {found}, this binary reads {FORMAT_VERSION}")]
    Version { found: u32 },
    #[error("snapshot is truncated: {found} of {expected} bytes")]
    Truncated { found: usize, expected: usize },
    #[error("snapshot checksum does not match: the file is corrupt")]
    Checksum,
    #[error("snapshot could not be decoded: {0}")]
    Decode(String),
}

#[derive(Serialize, Deserialize)]
struct Payload {
    stamp: String,
    last_seq: i64,
    max_rating: f32,
    relation_names: Vec<String>,
    skus: Vec<(String, i64)>,
    nodes: Vec<(WireKey, String)>,
    edges: Vec<WireEdge>,
}

#[derive(Serialize, Deserialize)]
enum WireKey {
    Product(i64),
    Category(String),
    Maker(u8, String),
    Attribute(String),
    User(i64),
    Concept(String),
    Segment(i64),
    Entity(String),
}

#[derive(Serialize, Deserialize)]
struct WireEdge {
    from: u32,
    to: u32,
    relation: u8,
    kg: u16,
    weight: f32,
    detail: WireDetail,
}

#[derive(Serialize, Deserialize)]
enum WireDetail {
    None,
    Interaction { kinds: u16, rating: Option<f32>, count: u32, last_at: i64 },
    Interest { id: i64, likes: bool, source_kind: String, source_ref: Option<String>, at: i64 },
    Scores { a: f32, b: f32, c: f32 },
}

const RELATIONS: [Relation; 10] = Relation::FIXED;

/// Encodes the graph, with the caller's stamp of the store it was built from.
pub fn encode(graph: &KnowledgeGraph, stamp: &str) -> Vec<u8> {
    // Node indices of a stable graph have holes where nodes were removed: renumber.
    let mut positions = vec![u32::MAX; graph.graph.node_bound()];
    let mut nodes = Vec::with_capacity(graph.graph.node_count());
    for index in graph.graph.node_indices() {
        positions[index.index()] = nodes.len() as u32;
        let node = &graph.graph[index];
        nodes.push((wire_key(&node.key), node.label.clone()));
    }
    let edges = graph
        .graph
        .edge_indices()
        .filter_map(|e| {
            let (from, to) = graph.graph.edge_endpoints(e)?;
            let edge = &graph.graph[e];
            let (relation, kg) = match edge.relation {
                Relation::Kg(id) => (RELATIONS.len() as u8, id),
                r => (
                    RELATIONS.iter().position(|x| *x == r).expect("every relation is listed") as u8,
                    0,
                ),
            };
            Some(WireEdge {
                from: positions[from.index()],
                to: positions[to.index()],
                relation,
                kg,
                weight: edge.weight,
                detail: wire_detail(graph, &edge.detail),
            })
        })
        .collect();
    let payload = Payload {
        stamp: stamp.to_owned(),
        last_seq: graph.last_seq,
        max_rating: graph.max_rating,
        relation_names: graph.relation_names.clone(),
        skus: graph.skus.iter().map(|(sku, id)| (sku.clone(), id.0)).collect(),
        nodes,
        edges,
    };
    let body = bincode::serialize(&payload).expect("in-memory values always serialise");
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a snapshot: the graph and the stamp it was written with.
pub fn decode(bytes: &[u8]) -> Result<(KnowledgeGraph, String), SnapshotError> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(SnapshotError::Version { found: version });
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let body = &bytes[HEADER_LEN..];
    if body.len() != len {
        return Err(SnapshotError::Truncated { found: body.len(), expected: len });
    }
    if crc32fast::hash(body) != crc {
        return Err(SnapshotError::Checksum);
    }
    let payload: Payload =
        bincode::deserialize(body).map_err(|e| SnapshotError::Decode(e.to_string()))?;

    let mut graph = KnowledgeGraph {
        last_seq: payload.last_seq,
        max_rating: payload.max_rating,
        relation_ids: payload
            .relation_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u16))
            .collect(),
        relation_names: payload.relation_names,
        skus: payload.skus.into_iter().map(|(sku, id)| (sku, ProductId(id))).collect(),
        ..KnowledgeGraph::default()
    };
    graph.graph.reserve_nodes(payload.nodes.len());
    graph.graph.reserve_edges(payload.edges.len());
    graph.index.reserve(payload.nodes.len());
    graph.interactions.reserve(payload.edges.len() / 2);
    let mut indices = Vec::with_capacity(payload.nodes.len());
    for (key, label) in payload.nodes {
        let key = node_key(key)?;
        graph.n_products += usize::from(matches!(key, NodeKey::Product(_)));
        let index = graph.graph.add_node(Node { key: key.clone(), label, degree: 0 });
        graph.index.insert(key, index);
        indices.push(index);
    }
    for edge in payload.edges {
        let (Some(&from), Some(&to)) =
            (indices.get(edge.from as usize), indices.get(edge.to as usize))
        else {
            return Err(SnapshotError::Decode(format!(
                "edge to node {} of {}",
                edge.from.max(edge.to),
                indices.len()
            )));
        };
        let relation = match RELATIONS.get(usize::from(edge.relation)) {
            Some(r) => *r,
            None if usize::from(edge.relation) == RELATIONS.len()
                && usize::from(edge.kg) < graph.relation_names.len() =>
            {
                Relation::Kg(edge.kg)
            }
            None => return Err(SnapshotError::Decode(format!("relation {}", edge.relation))),
        };
        let (detail, origin) = edge_detail(edge.detail)?;
        graph.graph[from].degree += 1;
        graph.graph[to].degree += 1;
        let interaction = matches!(detail, EdgeDetail::Interaction { .. });
        let interest = match detail {
            EdgeDetail::Interest { id, .. } => Some(id),
            _ => None,
        };
        let index = graph.graph.add_edge(from, to, Edge { relation, weight: edge.weight, detail });
        if interaction {
            graph.interactions.insert((from, to), index);
        }
        if let (Some(id), Some((source, at))) = (interest, origin) {
            graph.interests.insert(id, InterestEdge { edge: index, source, at });
        }
    }
    Ok((graph, payload.stamp))
}

fn wire_key(key: &NodeKey) -> WireKey {
    match key {
        NodeKey::Product(id) => WireKey::Product(id.0),
        NodeKey::Category(k) => WireKey::Category(k.clone()),
        NodeKey::Maker(kind, k) => WireKey::Maker(*kind as u8, k.clone()),
        NodeKey::Attribute(v) => WireKey::Attribute(v.clone()),
        NodeKey::User(id) => WireKey::User(id.0),
        NodeKey::Concept(s) => WireKey::Concept(s.clone()),
        NodeKey::Segment(id) => WireKey::Segment(id.0),
        NodeKey::Entity(e) => WireKey::Entity(e.clone()),
    }
}

fn node_key(key: WireKey) -> Result<NodeKey, SnapshotError> {
    Ok(match key {
        WireKey::Product(id) => NodeKey::Product(ProductId(id)),
        WireKey::Category(k) => NodeKey::Category(k),
        WireKey::Maker(kind, k) => {
            let kind = match kind {
                0 => MakerKindKey::Author,
                1 => MakerKindKey::Brand,
                2 => MakerKindKey::Publisher,
                other => return Err(SnapshotError::Decode(format!("maker kind {other}"))),
            };
            NodeKey::Maker(kind, k)
        }
        WireKey::Attribute(v) => NodeKey::Attribute(v),
        WireKey::User(id) => NodeKey::User(UserId(id)),
        WireKey::Concept(s) => NodeKey::Concept(s),
        WireKey::Segment(id) => NodeKey::Segment(SegmentId(id)),
        WireKey::Entity(e) => NodeKey::Entity(e),
    })
}

fn wire_detail(graph: &KnowledgeGraph, detail: &EdgeDetail) -> WireDetail {
    match detail {
        EdgeDetail::None => WireDetail::None,
        EdgeDetail::Interaction { kinds, rating, count, last_at } => WireDetail::Interaction {
            kinds: *kinds,
            rating: *rating,
            count: *count,
            last_at: *last_at,
        },
        EdgeDetail::Interest { id, polarity } => {
            let origin = graph.interests.get(id);
            WireDetail::Interest {
                id: id.0,
                likes: *polarity == Polarity::Likes,
                source_kind: origin.map_or("stated", |o| o.source.kind()).to_owned(),
                source_ref: origin.and_then(|o| o.source.reference()),
                at: origin.map_or(0, |o| o.at),
            }
        }
        EdgeDetail::Scores { a, b, c } => WireDetail::Scores { a: *a, b: *b, c: *c },
    }
}

/// The edge's detail, and for an interest its source and time.
fn edge_detail(
    detail: WireDetail,
) -> Result<(EdgeDetail, Option<(InterestSource, i64)>), SnapshotError> {
    Ok(match detail {
        WireDetail::None => (EdgeDetail::None, None),
        WireDetail::Interaction { kinds, rating, count, last_at } => {
            (EdgeDetail::Interaction { kinds, rating, count, last_at }, None)
        }
        WireDetail::Interest { id, likes, source_kind, source_ref, at } => {
            let source = InterestSource::parse(&source_kind, source_ref.as_deref())
                .ok_or_else(|| SnapshotError::Decode(format!("interest source {source_kind}")))?;
            let polarity = if likes { Polarity::Likes } else { Polarity::Dislikes };
            (EdgeDetail::Interest { id: InterestId(id), polarity }, Some((source, at)))
        }
        WireDetail::Scores { a, b, c } => (EdgeDetail::Scores { a, b, c }, None),
    })
}
