//! Hybrid retrieval: BM25 candidates and vector candidates fused into one ranking.
//!
//! Words find what the shopper named (a title, an author, a model number, a typo of
//! one); vectors find what they described ("a gift for someone who likes cooking").
//! Each side proposes its best `depth` products; vector candidates must pass the same
//! filters and exclusions as the words; the two lists are fused, then optionally
//! re-ranked for the shopper by a [`Rerank`] (the recommender's hook), then paged.

use std::collections::HashMap;

use shopgraph_core::{ProductId, UserId};
use shopgraph_embed::{Encoder, Method, VectorIndex};

use crate::SearchError;
use crate::index::{Hit, SearchIndex, SearchRequest, SearchResults, Sort};

/// How the two candidate lists become one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion (Cormack et al., 2009): Σ 1 / (k + rank). Needs no score
    /// calibration; `k` = 60 is the paper's value.
    Rrf { k: f32 },
    /// A convex combination of min-max normalised scores: `alpha` · vector +
    /// (1 − `alpha`) · BM25, a product missing from a list scoring 0 there.
    Convex { alpha: f32 },
    /// BM25 alone (the baseline).
    LexicalOnly,
    /// Vectors alone.
    SemanticOnly,
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion::Rrf { k: 60.0 }
    }
}

/// Re-orders fused results for a shopper: what the recommender plugs in.
pub trait Rerank: Send + Sync {
    /// `hits` arrive best first by fused score; return them in the order to show.
    fn rerank(&self, user: UserId, request: &SearchRequest, hits: Vec<Hit>) -> Vec<Hit>;
}

#[derive(Clone, Copy)]
pub struct HybridOptions<'a> {
    pub fusion: Fusion,
    /// Candidates taken from each side (at least the requested page's depth).
    pub depth: usize,
    pub method: Method,
    /// Vector candidates less similar than this (cosine) are not proposed: below it,
    /// "nearest" no longer means "related".
    pub min_similarity: f32,
    pub user: Option<UserId>,
    pub rerank: Option<&'a dyn Rerank>,
}

impl Default for HybridOptions<'_> {
    fn default() -> Self {
        HybridOptions {
            fusion: Fusion::default(),
            depth: 100,
            method: Method::Auto,
            min_similarity: DEFAULT_MIN_SIMILARITY,
            user: None,
            rerank: None,
        }
    }
}

/// For all-MiniLM-L6-v2 most unrelated product texts score below 0.15 against a
/// query. On the judged queries, floors from 0 to 0.15 rank identically (nDCG@10
/// 0.951) and 0.2 already loses relevant products (0.941): 0.15 drops the unrelated
/// tail and nothing else.
pub const DEFAULT_MIN_SIMILARITY: f32 = 0.15;

/// Cap on candidates per side, whatever the page asks.
pub const MAX_DEPTH: usize = 1000;

/// Searches with words and vectors and fuses the two. The text of the request is
/// encoded once; excluded words are not part of what is encoded.
pub fn search(
    index: &SearchIndex,
    encoder: &Encoder,
    vectors: &VectorIndex,
    request: &SearchRequest,
    options: HybridOptions<'_>,
) -> Result<SearchResults, SearchError> {
    let parsed = request.validate()?;
    if parsed.is_empty() || options.fusion == Fusion::LexicalOnly {
        // Nothing to mean (a browse by filters), or the baseline asked for.
        return index.search(request);
    }
    let depth = options.depth.max(request.offset + request.limit).min(MAX_DEPTH);
    let searcher = index.searcher();
    let lexical = if options.fusion == Fusion::SemanticOnly {
        Vec::new()
    } else {
        index.lexical_candidates(&searcher, &parsed, &request.filters, depth)?
    };

    let text: Vec<&str> = parsed.positive_words().collect();
    let query_vector = encoder.encode(&[&text.join(" ")])?;
    // Over-fetch: some vector candidates will fail the filters.
    let mut semantic = vectors.search(&query_vector, depth * 2, options.method, &|_| true)?;
    semantic.retain(|&(_, similarity)| similarity >= options.min_similarity);
    let semantic_ids: Vec<ProductId> = semantic.iter().map(|(id, _)| *id).collect();
    let admitted = index.admit(&searcher, &parsed, &request.filters, &semantic_ids)?;
    let semantic: Vec<(ProductId, f32)> =
        semantic.into_iter().filter(|(id, _)| admitted.contains_key(id)).take(depth).collect();

    let lexical_scores: Vec<(ProductId, f32)> = lexical.iter().map(|&(id, s, _)| (id, s)).collect();
    let fused = fuse(&lexical_scores, &semantic, options.fusion);
    let total = fused.len();

    let mut addresses: HashMap<ProductId, tantivy::DocAddress> = admitted;
    addresses.extend(lexical.iter().map(|&(id, _, a)| (id, a)));
    let lexical_rank: HashMap<ProductId, usize> =
        lexical.iter().enumerate().map(|(i, (id, _, _))| (*id, i + 1)).collect();
    let semantic_rank: HashMap<ProductId, usize> =
        semantic.iter().enumerate().map(|(i, (id, _))| (*id, i + 1)).collect();

    let mut hits = Vec::with_capacity(fused.len());
    for (id, score) in fused {
        let Some(&address) = addresses.get(&id) else { continue };
        let mut hit = index.hit(&searcher, address, score)?;
        hit.lexical_rank = lexical_rank.get(&id).copied();
        hit.semantic_rank = semantic_rank.get(&id).copied();
        hits.push(hit);
    }
    if let (Some(user), Some(rerank)) = (options.user, options.rerank) {
        hits = rerank.rerank(user, request, hits);
    }
    sort_hits(&mut hits, request.sort);
    let hits = hits.into_iter().skip(request.offset).take(request.limit).collect();
    let facets = if request.facets {
        // Facets describe the lexical matches: the vector side has no "all matches".
        let mut lexical_request = request.clone();
        lexical_request.limit = 1;
        lexical_request.offset = 0;
        index.search(&lexical_request)?.facets
    } else {
        None
    };
    Ok(SearchResults { total, hits, facets, reading: index.reading(&parsed) })
}

/// Orders fused hits by a field when the request asks (stable, so relevance breaks ties).
fn sort_hits(hits: &mut [Hit], sort: Sort) {
    match sort {
        Sort::Relevance | Sort::Popularity => {}
        Sort::PriceAsc => hits.sort_by_key(|h| h.price_cents),
        Sort::PriceDesc => hits.sort_by_key(|h| std::cmp::Reverse(h.price_cents)),
        Sort::Newest => hits.sort_by_key(|h| std::cmp::Reverse(h.year)),
    }
}

/// Fuses two best-first candidate lists into one, best first. Ties are broken by the
/// lexical list's order, then the semantic list's, so the result is deterministic.
pub fn fuse(
    lexical: &[(ProductId, f32)],
    semantic: &[(ProductId, f32)],
    fusion: Fusion,
) -> Vec<(ProductId, f32)> {
    let mut scores: HashMap<ProductId, (f32, usize)> = HashMap::new();
    let mut order = 0usize;
    let mut add = |id: ProductId, score: f32| {
        let entry = scores.entry(id).or_insert_with(|| {
            order += 1;
            (0.0, order)
        });
        entry.0 += score;
    };
    match fusion {
        Fusion::Rrf { k } => {
            for (rank, (id, _)) in lexical.iter().enumerate() {
                add(*id, 1.0 / (k + rank as f32 + 1.0));
            }
            for (rank, (id, _)) in semantic.iter().enumerate() {
                add(*id, 1.0 / (k + rank as f32 + 1.0));
            }
        }
        Fusion::Convex { alpha } => {
            for (id, s) in normalised(lexical) {
                add(id, (1.0 - alpha) * s);
            }
            for (id, s) in normalised(semantic) {
                add(id, alpha * s);
            }
        }
        Fusion::LexicalOnly => lexical.iter().for_each(|&(id, s)| add(id, s)),
        Fusion::SemanticOnly => semantic.iter().for_each(|&(id, s)| add(id, s)),
    }
    let mut out: Vec<(ProductId, f32, usize)> =
        scores.into_iter().map(|(id, (s, o))| (id, s, o)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    out.into_iter().map(|(id, s, _)| (id, s)).collect()
}

/// Scores mapped onto [0, 1] by the list's own minimum and maximum (all 1 when equal).
fn normalised(list: &[(ProductId, f32)]) -> Vec<(ProductId, f32)> {
    let (lo, hi) = list
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &(_, s)| (lo.min(s), hi.max(s)));
    list.iter().map(|&(id, s)| (id, if hi > lo { (s - lo) / (hi - lo) } else { 1.0 })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[(ProductId, f32)]) -> Vec<i64> {
        list.iter().map(|(id, _)| id.0).collect()
    }

    #[test]
    fn rrf_rewards_agreement_and_keeps_both_sides() {
        let lexical = [(ProductId(1), 9.0), (ProductId(2), 5.0), (ProductId(3), 1.0)];
        let semantic = [(ProductId(4), 0.9), (ProductId(2), 0.8)];
        let fused = fuse(&lexical, &semantic, Fusion::Rrf { k: 60.0 });
        assert_eq!(ids(&fused), [2, 1, 4, 3]);
    }

    #[test]
    fn convex_weights_normalised_scores() {
        let lexical = [(ProductId(1), 20.0), (ProductId(2), 10.0)];
        let semantic = [(ProductId(2), 0.9), (ProductId(3), 0.3)];
        assert_eq!(ids(&fuse(&lexical, &semantic, Fusion::Convex { alpha: 0.0 }))[0], 1);
        assert_eq!(ids(&fuse(&lexical, &semantic, Fusion::Convex { alpha: 1.0 }))[0], 2);
        assert_eq!(ids(&fuse(&lexical, &semantic, Fusion::Convex { alpha: 0.6 }))[0], 2);
    }

    #[test]
    fn empty_sides_fuse_to_the_other() {
        let lexical = [(ProductId(1), 2.0)];
        assert_eq!(ids(&fuse(&lexical, &[], Fusion::default())), [1]);
        assert_eq!(ids(&fuse(&[], &lexical, Fusion::default())), [1]);
        assert!(fuse(&[], &[], Fusion::default()).is_empty());
    }
}
