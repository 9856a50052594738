//! Triples of imported knowledge graphs (Freebase for MovieLens).

/// One `head —relation→ tail` fact, with Freebase-style ids (`m.0bln8`) and relation
/// names (`film.film.directed_by`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Triple {
    pub head: String,
    pub relation: String,
    pub tail: String,
}
