//! Exact nearest neighbours: every vector scored by a dot product, the best `k` kept.
//!
//! Vectors are unit length, so the dot product is the cosine similarity. `dot` keeps
//! eight independent partial sums: the compiler may not reorder a single running float
//! sum, but eight lanes map onto one AVX2 register (the workspace builds for x86-64-v3)
//! and become fused multiply-adds.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

/// Dot product of two equally long slices.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    const LANES: usize = 8;
    let mut acc = [0f32; LANES];
    let (a_main, a_rest) = a.split_at(a.len() / LANES * LANES);
    let (b_main, b_rest) = b.split_at(a_main.len());
    for (x, y) in a_main.chunks_exact(LANES).zip(b_main.chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    sum
}

/// A scored row, ordered so that a `BinaryHeap` of them pops the *worst* first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scored {
    pub(crate) score: f32,
    pub(crate) row: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap's top is the lowest score; ties broken by row for determinism.
        other.score.total_cmp(&self.score).then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the best `k` of a stream of scores.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> TopK {
        TopK { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    #[inline]
    pub(crate) fn push(&mut self, row: u32, score: f32) {
        if self.heap.len() < self.k {
            self.heap.push(Scored { score, row });
        } else if let Some(worst) = self.heap.peek()
            && score > worst.score
        {
            self.heap.pop();
            self.heap.push(Scored { score, row });
        }
    }

    /// What a new score must beat to be kept: the lowest kept once `k` are kept,
    /// anything before.
    pub(crate) fn threshold(&self) -> f32 {
        match self.heap.peek() {
            Some(worst) if self.heap.len() >= self.k => worst.score,
            _ => f32::NEG_INFINITY,
        }
    }

    fn merge(mut self, other: TopK) -> TopK {
        for s in other.heap {
            self.push(s.row, s.score);
        }
        self
    }

    /// Best first.
    pub(crate) fn into_sorted(self) -> Vec<(u32, f32)> {
        // `into_sorted_vec` is ascending by `Ord`, which is descending by score.
        self.heap.into_sorted_vec().into_iter().map(|s| (s.row, s.score)).collect()
    }
}

/// Rows per parallel task: large enough that splitting costs nothing next to scoring.
const CHUNK_ROWS: usize = 8192;

/// The `k` rows of `data` (rows of `dim` floats) most similar to `query`, best first,
/// among those `keep` accepts. Large collections are scanned on all threads.
pub fn top_k(
    data: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    keep: &(dyn Fn(u32) -> bool + Sync),
) -> Vec<(u32, f32)> {
    if k == 0 || dim == 0 {
        return Vec::new();
    }
    let scan = |(chunk_no, chunk): (usize, &[f32])| {
        let mut top = TopK::new(k);
        let first = chunk_no * CHUNK_ROWS;
        for (i, row) in chunk.chunks_exact(dim).enumerate() {
            let row_id = (first + i) as u32;
            if keep(row_id) {
                top.push(row_id, dot(row, query));
            }
        }
        top
    };
    let chunks = data.chunks(CHUNK_ROWS * dim).enumerate();
    let top = if data.len() / dim > CHUNK_ROWS {
        chunks.collect::<Vec<_>>().into_par_iter().map(scan).reduce(|| TopK::new(k), TopK::merge)
    } else {
        chunks.map(scan).fold(TopK::new(k), TopK::merge)
    };
    top.into_sorted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_naive_sum() {
        for len in [0, 1, 7, 8, 9, 384, 385] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-4, "len {len}");
        }
    }

    #[test]
    fn top_k_is_sorted_filtered_and_complete() {
        let dim = 4;
        let n = 20_000; // more than one chunk, so the parallel path runs
        let data: Vec<f32> = (0..n * dim).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let query = [0.5, 0.1, 0.9, 0.3];
        let keep = |row: u32| !row.is_multiple_of(3);
        let got = top_k(&data, dim, &query, 10, &keep);
        let mut all: Vec<(u32, f32)> = (0..n as u32)
            .filter(|&r| keep(r))
            .map(|r| (r, dot(&data[r as usize * dim..(r as usize + 1) * dim], &query)))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(got.len(), 10);
        let want: Vec<f32> = all[..10].iter().map(|x| x.1).collect();
        let have: Vec<f32> = got.iter().map(|x| x.1).collect();
        assert_eq!(have, want);
        assert!(got.iter().all(|(r, _)| keep(*r)));
    }
}
