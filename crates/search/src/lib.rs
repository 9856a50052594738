//! Product search: a tantivy index over the catalog and hybrid retrieval with vectors.
//!
//! - [`SearchIndex`]: BM25 over titles, makers, categories, descriptions and attributes,
//!   with typo tolerance, synonyms ([`Synonyms`]), Chinese (jieba) beside English,
//!   filters, facet counts, sorting and pages; updated in place product by product.
//! - [`hybrid`]: the same request answered by words and vectors together, fused, with a
//!   hook for the recommender to re-rank for a shopper.
//! - [`query`]: how a customer's typing is read; every input has a reading or a clear
//!   error, never a crash.

mod doc;
pub mod eval;
mod fuzzy;
pub mod hybrid;
mod index;
pub mod query;
mod schema;
mod summary;
mod synonyms;

pub use doc::{Categories, ProductDoc, attributes_text};
pub use hybrid::{DEFAULT_MIN_SIMILARITY, Fusion, HybridOptions, Rerank};
pub use index::{
    CategoryCount, Facets, Filters, Hit, MAX_DEPTH, MAX_LIMIT, SearchIndex, SearchRequest,
    SearchResults, Sort,
};
pub use schema::SCHEMA_VERSION;
pub use summary::PriceBand;
pub use synonyms::{MAX_ENTRY_WORDS, Synonyms};

/// Why a search or an index operation failed. [`SearchError::is_client_error`] tells
/// the shopper's mistakes (a 4xx) from the platform's (a 5xx).
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("type a word to search for, or choose a filter")]
    EmptyQuery,
    #[error("the query is {bytes} bytes long; at most {max} are read")]
    QueryTooLong { bytes: usize, max: usize },
    #[error("{0}")]
    BadPage(String),
    #[error("{0}")]
    BadFilter(String),
    #[error("synonyms, line {line}: {reason}")]
    Synonyms { line: usize, reason: String },
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("vectors: {0}")]
    Embed(#[from] shopgraph_embed::EmbedError),
    #[error("{0}")]
    Io(String),
}

impl SearchError {
    /// True when the request itself is at fault and retrying it unchanged cannot help.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            SearchError::EmptyQuery
                | SearchError::QueryTooLong { .. }
                | SearchError::BadPage(_)
                | SearchError::BadFilter(_)
        )
    }
}
