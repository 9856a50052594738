//! A hierarchical navigable small world graph (Malkov & Yashunin, 2016): approximate
//! nearest neighbours in about logarithmic time.
//!
//! Every row lives on layer 0; a row reaches layer `l` with probability `m^-l`. A search
//! walks greedily down from the single entry point on the top layer, then explores
//! layer 0 keeping the `ef` best rows seen. Links are chosen by the paper's heuristic
//! (a candidate is kept only if it is closer to the new row than to any neighbour
//! already kept), which keeps clusters connected to each other.
//!
//! The graph stores row numbers only; the vectors stay with their owner
//! ([`crate::VectorIndex`]) and are passed in, as `data` with `dim` floats a row.
//! Removed rows stay in the graph as stepping stones and are filtered from results.

use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use crate::exact::{TopK, dot};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per row on the upper layers; layer 0 allows twice as many.
    pub m: usize,
    /// Candidates kept while linking a new row: more is slower to build, better recall.
    pub ef_construction: usize,
    /// Seeds the layer draw, so a build is reproducible.
    pub seed: u64,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams { m: 16, ef_construction: 100, seed: 0x5107_6a9f }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hnsw {
    params: HnswParams,
    /// `links[row][layer]`: the row's neighbours on each layer it reaches. Empty for a
    /// row not (yet) inserted.
    links: Vec<Vec<Vec<u32>>>,
    entry: Option<u32>,
    top_layer: usize,
    rng: u64,
}

/// Marks rows seen during one search without clearing a whole array each time.
pub struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    pub fn new(rows: usize) -> Visited {
        Visited { marks: vec![0; rows], epoch: 0 }
    }

    fn start(&mut self, rows: usize) {
        if self.marks.len() < rows {
            self.marks.resize(rows, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// True the first time a row is seen in this search.
    #[inline]
    fn first_visit(&mut self, row: u32) -> bool {
        let mark = &mut self.marks[row as usize];
        let first = *mark != self.epoch;
        *mark = self.epoch;
        first
    }
}

/// A candidate ordered best-first, for the max-heap of rows still to expand.
#[derive(Clone, Copy, PartialEq)]
struct Best(f32, u32);
impl Eq for Best {}
impl Ord for Best {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}
impl PartialOrd for Best {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn row_of(data: &[f32], dim: usize, row: u32) -> &[f32] {
    &data[row as usize * dim..(row as usize + 1) * dim]
}

impl Hnsw {
    pub fn new(params: HnswParams) -> Hnsw {
        Hnsw {
            params: HnswParams { m: params.m.max(2), ..params },
            links: Vec::new(),
            entry: None,
            top_layer: 0,
            rng: params.seed | 1,
        }
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Rows inserted so far (the highest row number plus one, at most).
    pub fn len(&self) -> usize {
        self.links.iter().filter(|l| !l.is_empty()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.entry.is_none()
    }

    pub fn contains(&self, row: u32) -> bool {
        self.links.get(row as usize).is_some_and(|l| !l.is_empty())
    }

    /// Links `row` (whose vector is in `data`) into the graph. Each row once.
    pub fn insert(&mut self, data: &[f32], dim: usize, row: u32, visited: &mut Visited) {
        let rows = data.len() / dim;
        assert!((row as usize) < rows, "row {row} has no vector");
        if self.links.len() < rows {
            self.links.resize(rows, Vec::new());
        }
        assert!(!self.contains(row), "row {row} inserted twice");
        let layer = self.draw_layer();
        self.links[row as usize] = vec![Vec::new(); layer + 1];
        let Some(entry) = self.entry else {
            self.entry = Some(row);
            self.top_layer = layer;
            return;
        };

        let query = row_of(data, dim, row);
        let mut nearest = (entry, dot(query, row_of(data, dim, entry)));
        for l in (layer + 1..=self.top_layer).rev() {
            nearest = self.greedy(data, dim, query, nearest, l);
        }
        let mut entries = vec![nearest];
        for l in (0..=layer.min(self.top_layer)).rev() {
            let found = self.search_layer(
                data,
                dim,
                query,
                &entries,
                self.params.ef_construction,
                l,
                visited,
            );
            let chosen = self.select(data, dim, &found, self.params.m);
            for &(n, _) in &chosen {
                self.links[n as usize][l].push(row);
                if self.links[n as usize][l].len() > self.max_links(l) {
                    self.shrink(data, dim, n, l);
                }
            }
            self.links[row as usize][l] = chosen.iter().map(|&(n, _)| n).collect();
            entries = found;
        }
        if layer > self.top_layer {
            self.top_layer = layer;
            self.entry = Some(row);
        }
    }

    /// The `k` rows most similar to `query` among those `keep` accepts, best first,
    /// exploring `ef` candidates (at least `k`). May return fewer than `k` when `keep`
    /// rejects most of what the search reaches.
    pub fn search(
        &self,
        data: &[f32],
        dim: usize,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let Some(entry) = self.entry else { return Vec::new() };
        let mut nearest = (entry, dot(query, row_of(data, dim, entry)));
        for l in (1..=self.top_layer).rev() {
            nearest = self.greedy(data, dim, query, nearest, l);
        }
        let mut visited = Visited::new(self.links.len());
        let found = self.search_layer(data, dim, query, &[nearest], ef.max(k), 0, &mut visited);
        found.into_iter().filter(|&(row, _)| keep(row)).take(k).collect()
    }

    fn max_links(&self, layer: usize) -> usize {
        if layer == 0 { 2 * self.params.m } else { self.params.m }
    }

    /// Geometric layer: P(layer >= l) = m^-l.
    fn draw_layer(&mut self) -> usize {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let uniform = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let level = -uniform.ln() / (self.params.m as f64).ln();
        (level as usize).min(16)
    }

    /// Moves to a better neighbour on `layer` until none is better.
    fn greedy(
        &self,
        data: &[f32],
        dim: usize,
        query: &[f32],
        mut at: (u32, f32),
        layer: usize,
    ) -> (u32, f32) {
        loop {
            let mut moved = false;
            for &n in &self.links[at.0 as usize][layer] {
                let score = dot(query, row_of(data, dim, n));
                if score > at.1 {
                    at = (n, score);
                    moved = true;
                }
            }
            if !moved {
                return at;
            }
        }
    }

    /// The paper's SEARCH-LAYER: the `ef` best rows reachable from `entries` on `layer`,
    /// best first.
    #[allow(clippy::too_many_arguments)]
    fn search_layer(
        &self,
        data: &[f32],
        dim: usize,
        query: &[f32],
        entries: &[(u32, f32)],
        ef: usize,
        layer: usize,
        visited: &mut Visited,
    ) -> Vec<(u32, f32)> {
        visited.start(self.links.len());
        let mut frontier: BinaryHeap<Best> = BinaryHeap::new();
        let mut best = TopK::new(ef);
        for &(row, score) in entries {
            if visited.first_visit(row) {
                frontier.push(Best(score, row));
                best.push(row, score);
            }
        }
        while let Some(Best(score, row)) = frontier.pop() {
            if score < best.threshold() {
                break;
            }
            let Some(neighbours) = self.links[row as usize].get(layer) else { continue };
            for &n in neighbours {
                if !visited.first_visit(n) {
                    continue;
                }
                let s = dot(query, row_of(data, dim, n));
                if s > best.threshold() {
                    frontier.push(Best(s, n));
                    best.push(n, s);
                }
            }
        }
        best.into_sorted()
    }

    /// The paper's SELECT-NEIGHBORS-HEURISTIC over candidates sorted best first: a
    /// candidate is kept unless it is more similar to a row kept so far than to the new
    /// row, which spreads links across directions instead of into one cluster. A tie
    /// keeps it: with a strict test, a row identical to one already linked (two editions
    /// with the same text) kept that single link and nothing else, and recall fell.
    fn select(&self, data: &[f32], dim: usize, sorted: &[(u32, f32)], m: usize) -> Vec<(u32, f32)> {
        let mut chosen: Vec<(u32, f32)> = Vec::with_capacity(m);
        for &(c, score) in sorted {
            if chosen.len() == m {
                break;
            }
            let cv = row_of(data, dim, c);
            if chosen.iter().all(|&(k, _)| dot(cv, row_of(data, dim, k)) <= score) {
                chosen.push((c, score));
            }
        }
        chosen
    }

    /// Cuts an over-full link list back to its limit with the same heuristic.
    fn shrink(&mut self, data: &[f32], dim: usize, row: u32, layer: usize) {
        let base = row_of(data, dim, row);
        let mut scored: Vec<(u32, f32)> = self.links[row as usize][layer]
            .iter()
            .map(|&n| (n, dot(base, row_of(data, dim, n))))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let kept = self.select(data, dim, &scored, self.max_links(layer));
        self.links[row as usize][layer] = kept.into_iter().map(|(n, _)| n).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exact;

    /// Unit vectors around a few hundred centres: clustered like real embeddings.
    fn clustered(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let centres: Vec<f32> = (0..300 * dim).map(|_| next()).collect();
        let mut data = Vec::with_capacity(rows * dim);
        for r in 0..rows {
            let c = (r * 7) % 300;
            let mut v: Vec<f32> = (0..dim).map(|d| centres[c * dim + d] + 0.35 * next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            data.extend(v);
        }
        data
    }

    #[test]
    fn recall_against_exact_is_high() {
        let (rows, dim) = (4000, 32);
        let data = clustered(rows, dim, 42);
        let mut index = Hnsw::new(HnswParams::default());
        let mut visited = Visited::new(rows);
        for r in 0..rows as u32 {
            index.insert(&data, dim, r, &mut visited);
        }
        assert_eq!(index.len(), rows);
        let queries = clustered(100, dim, 7);
        let (mut hit, mut total) = (0, 0);
        for q in queries.chunks_exact(dim) {
            let exact = exact::top_k(&data, dim, q, 10, &|_| true);
            let approx = index.search(&data, dim, q, 10, 64, &|_| true);
            assert!(approx.windows(2).all(|w| w[0].1 >= w[1].1), "sorted best first");
            total += exact.len();
            hit += exact.iter().filter(|e| approx.iter().any(|a| a.0 == e.0)).count();
        }
        let recall = hit as f64 / total as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");
    }

    /// Many identical vectors (a bookstore's editions of one title): each must still
    /// be linked beyond its twins, or whole regions of the graph become unreachable.
    #[test]
    fn recall_holds_with_many_duplicates() {
        let dim = 32;
        let distinct = clustered(400, dim, 9);
        let mut data = Vec::new();
        for copy in 0..8 {
            for r in 0..400 {
                if (r + copy) % 2 == 0 {
                    data.extend_from_slice(&distinct[r * dim..(r + 1) * dim]);
                }
            }
        }
        let rows = data.len() / dim;
        let mut index = Hnsw::new(HnswParams::default());
        let mut visited = Visited::new(rows);
        for r in 0..rows as u32 {
            index.insert(&data, dim, r, &mut visited);
        }
        let queries = clustered(100, dim, 21);
        let (mut hit, mut total) = (0, 0);
        for q in queries.chunks_exact(dim) {
            let exact = exact::top_k(&data, dim, q, 10, &|_| true);
            let tenth = exact.last().map_or(f32::NEG_INFINITY, |e| e.1);
            let approx = index.search(&data, dim, q, 10, 64, &|_| true);
            total += exact.len();
            hit += approx.iter().filter(|a| a.1 >= tenth - 1e-6).count().min(exact.len());
        }
        let recall = hit as f64 / total as f64;
        assert!(recall >= 0.95, "recall@10 with duplicates {recall}");
    }

    #[test]
    fn filtered_rows_never_come_back() {
        let (rows, dim) = (500, 16);
        let data = clustered(rows, dim, 3);
        let mut index = Hnsw::new(HnswParams::default());
        let mut visited = Visited::new(rows);
        for r in 0..rows as u32 {
            index.insert(&data, dim, r, &mut visited);
        }
        let q = &data[..dim];
        let got = index.search(&data, dim, q, 10, 100, &|r| r % 2 == 1);
        assert!(!got.is_empty());
        assert!(got.iter().all(|(r, _)| r % 2 == 1));
        // Row 0 is its own nearest neighbour, and it is removed.
        assert!(got.iter().all(|(r, _)| *r != 0));
    }

    #[test]
    fn empty_and_single_row_graphs_answer() {
        let dim = 4;
        let data = vec![0.5f32; dim];
        let mut index = Hnsw::new(HnswParams::default());
        assert!(index.search(&data, dim, &data, 5, 10, &|_| true).is_empty());
        index.insert(&data, dim, 0, &mut Visited::new(1));
        assert_eq!(index.search(&data, dim, &data, 5, 10, &|_| true), vec![(0, 1.0)]);
    }
}
