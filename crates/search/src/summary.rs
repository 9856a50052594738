//! Counts over every match, not just the page shown: how many fall in each price band
//! and how many are in stock. Read from the fast (columnar) fields, so a count costs a
//! lookup per matching document and no stored-document reads.

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

/// A price range in cents, `[min, max)`; `max` `None` is open-ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceBand {
    pub min_cents: i64,
    pub max_cents: Option<i64>,
}

/// Band edges, in cents: under 10, 10–25, 25–50, 50–100, 100–250, 250–1000, 1000 and up.
const EDGES: [i64; 6] = [1_000, 2_500, 5_000, 10_000, 25_000, 100_000];

pub(crate) fn bands() -> Vec<PriceBand> {
    let mut out = Vec::with_capacity(EDGES.len() + 1);
    let mut min = 0;
    for &edge in &EDGES {
        out.push(PriceBand { min_cents: min, max_cents: Some(edge) });
        min = edge;
    }
    out.push(PriceBand { min_cents: min, max_cents: None });
    out
}

fn band_of(price: i64) -> usize {
    EDGES.iter().position(|&edge| price < edge).unwrap_or(EDGES.len())
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Summary {
    /// Every band, in order, with its count (zero counts included).
    pub price_bands: Vec<(PriceBand, u64)>,
    pub in_stock: u64,
}

#[derive(Default)]
pub(crate) struct SummaryCollector;

pub(crate) struct SegmentSummary {
    price: Option<Column<i64>>,
    stock: Option<Column<i64>>,
    counts: [u64; EDGES.len() + 1],
    in_stock: u64,
}

impl Collector for SummaryCollector {
    type Fruit = Summary;
    type Child = SegmentSummary;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<SegmentSummary> {
        let fast = segment.fast_fields();
        Ok(SegmentSummary {
            price: fast.i64("price_cents").ok(),
            stock: fast.i64("stock").ok(),
            counts: [0; EDGES.len() + 1],
            in_stock: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, parts: Vec<([u64; EDGES.len() + 1], u64)>) -> tantivy::Result<Summary> {
        let mut counts = [0u64; EDGES.len() + 1];
        let mut in_stock = 0;
        for (c, s) in parts {
            counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
            in_stock += s;
        }
        Ok(Summary { price_bands: bands().into_iter().zip(counts).collect(), in_stock })
    }
}

impl SegmentCollector for SegmentSummary {
    type Fruit = ([u64; EDGES.len() + 1], u64);

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(price) = self.price.as_ref().and_then(|c| c.first(doc)) {
            self.counts[band_of(price)] += 1;
        }
        if self.stock.as_ref().and_then(|c| c.first(doc)).is_some_and(|s| s > 0) {
            self.in_stock += 1;
        }
    }

    fn harvest(self) -> Self::Fruit {
        (self.counts, self.in_stock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_every_price_once() {
        let b = bands();
        assert_eq!(b.len(), EDGES.len() + 1);
        for price in [0, 999, 1_000, 2_499, 99_999, 100_000, i64::MAX] {
            let i = band_of(price);
            assert!(price >= b[i].min_cents && b[i].max_cents.is_none_or(|m| price < m), "{price}");
        }
    }
}
