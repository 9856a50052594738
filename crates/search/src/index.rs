//! The tantivy index of products: building and updating it in place, and answering a
//! [`SearchRequest`] with BM25 ranking, filters, facets, sorting and pages.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use shopgraph_core::ProductId;
use tantivy::collector::{Collector, Count, DocSetCollector, FacetCollector, FacetCounts, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, DisjunctionMaxQuery, Occur, PhraseQuery,
    Query, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{Facet, IndexRecordOption, TantivyDocument, Value};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Searcher, Term};

use crate::SearchError;
use crate::doc::{Categories, ProductDoc};
use crate::fuzzy::FirstLetterFuzzy;
use crate::query::{ParsedQuery, parse};
use crate::schema::{self, Fields, SCHEMA_VERSION, has_cjk, terms};
use crate::summary::{PriceBand, Summary, SummaryCollector};
use crate::synonyms::Synonyms;

/// Results a page may hold.
pub const MAX_LIMIT: usize = 100;
/// How deep pages may go (offset + limit): deeper pages cost more than they help.
pub const MAX_DEPTH: usize = 10_000;

/// Field weights for BM25: a word in the title says more than one in the description.
const TITLE_BOOST: f32 = 3.0;
const MAKER_BOOST: f32 = 2.0;
const CATEGORY_BOOST: f32 = 1.5;
const PUBLISHER_BOOST: f32 = 1.0;
const DESCRIPTION_BOOST: f32 = 1.0;
const ATTRIBUTE_BOOST: f32 = 1.0;
const ZH_TITLE_BOOST: f32 = TITLE_BOOST;
const ZH_BODY_BOOST: f32 = DESCRIPTION_BOOST;
/// A typo-tolerant match scores a constant, below most exact matches.
const FUZZY_BOOST: f32 = 1.5;
/// A synonym's match counts a little less than the word typed.
const SYNONYM_BOOST: f32 = 0.8;
/// Share of the other synonyms' scores added to the best one's.
const SYNONYM_TIE_BREAKER: f32 = 0.1;
/// Relevance adds this times ln(1 + popularity): among equally good matches, what
/// shoppers pick comes first.
const POPULARITY_WEIGHT: f32 = 0.1;
/// Words shorter than this get no typo tolerance ("cat" is not a typo of "car"); from
/// `FUZZY_TWO_EDITS` characters on, two edits are tolerated.
const FUZZY_MIN_CHARS: usize = 5;
const FUZZY_TWO_EDITS: usize = 9;
/// Typo tolerance for at most this many words of a query (each costs an automaton walk).
const FUZZY_MAX_WORDS: usize = 8;
/// A word is common when its postings over the text fields pass
/// `max(COMMON_MIN_POSTINGS, documents / COMMON_SHARE)` ("book" in the bookstore, where
/// most publishers are "… Books"). Common words only rank the products the query's
/// other words match, as in Lucene's common-terms query: scoring every product that
/// says "book" costs milliseconds and ranks nothing. A query of common words alone
/// needs all of them.
const COMMON_MIN_POSTINGS: u64 = 2_000;
const COMMON_SHARE: u64 = 20;
/// A term in all but one in `UBIQUITOUS_SHARE` products of a field is left out of that
/// field's clause (its BM25 weight there is under 0.1).
const UBIQUITOUS_SHARE: u64 = 10;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// A category key; its subcategories are included.
    pub category: Option<String>,
    pub price_min_cents: Option<i64>,
    pub price_max_cents: Option<i64>,
    pub in_stock: bool,
    pub year_min: Option<i32>,
    pub year_max: Option<i32>,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sort {
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    Popularity,
    Newest,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Sort> {
        Some(match s {
            "relevance" => Sort::Relevance,
            "price" | "price-asc" => Sort::PriceAsc,
            "price-desc" => Sort::PriceDesc,
            "popularity" | "popular" => Sort::Popularity,
            "newest" | "year" => Sort::Newest,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchRequest {
    pub text: String,
    pub filters: Filters,
    pub sort: Sort,
    pub offset: usize,
    pub limit: usize,
    /// Count matches by category, price band and stock.
    pub facets: bool,
}

impl SearchRequest {
    pub fn new(text: impl Into<String>) -> SearchRequest {
        SearchRequest {
            text: text.into(),
            filters: Filters::default(),
            sort: Sort::Relevance,
            offset: 0,
            limit: 10,
            facets: false,
        }
    }

    pub(crate) fn validate(&self) -> Result<ParsedQuery, SearchError> {
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(SearchError::BadPage(format!("limit must be 1 to {MAX_LIMIT}")));
        }
        if self.offset.saturating_add(self.limit) > MAX_DEPTH {
            return Err(SearchError::BadPage(format!(
                "offset + limit must be at most {MAX_DEPTH}; narrow the search instead"
            )));
        }
        let f = &self.filters;
        if let (Some(lo), Some(hi)) = (f.price_min_cents, f.price_max_cents)
            && lo > hi
        {
            return Err(SearchError::BadFilter("the lowest price is above the highest".into()));
        }
        if let (Some(lo), Some(hi)) = (f.year_min, f.year_max)
            && lo > hi
        {
            return Err(SearchError::BadFilter("the first year is after the last".into()));
        }
        let parsed = parse(&self.text)?;
        if parsed.is_empty() && f.is_empty() {
            return Err(SearchError::EmptyQuery);
        }
        Ok(parsed)
    }
}

/// One result.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub id: ProductId,
    pub sku: String,
    pub title: String,
    pub maker: Option<String>,
    pub price_cents: i64,
    pub stock: i64,
    pub year: Option<i32>,
    /// The ranking score: BM25 plus the popularity prior, or the fused score in hybrid
    /// search; 0 when sorted by a field.
    pub score: f32,
    /// 1-based ranks in the lexical and the vector candidate lists (hybrid search).
    pub lexical_rank: Option<usize>,
    pub semantic_rank: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CategoryCount {
    pub key: String,
    pub name: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Facets {
    /// Matches in each subcategory of the filtered category (or each top category).
    pub categories: Vec<CategoryCount>,
    pub price_bands: Vec<(PriceBand, u64)>,
    pub in_stock: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SearchResults {
    /// Matching products (for hybrid search: candidates that passed the filters).
    pub total: usize,
    pub hits: Vec<Hit>,
    pub facets: Option<Facets>,
    /// How the query was read, for the shopper and for debugging.
    pub reading: String,
}

pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter>>,
    fields: Fields,
    synonyms: Synonyms,
    categories: RwLock<Categories>,
}

/// Memory for the writer's in-RAM segment before it flushes.
const WRITER_HEAP: usize = 128 << 20;

#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    schema: u32,
    mark: String,
}

impl SearchIndex {
    /// Opens the index in `dir`, creating it if there is none. An index written with
    /// another schema version is discarded and recreated empty ([`SearchIndex::mark`]
    /// is then `None`, telling the caller to rebuild).
    pub fn open(dir: &Path, synonyms: Synonyms) -> Result<SearchIndex, SearchError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| SearchError::Io(format!("{}: {e}", dir.display())))?;
        let (schema, fields) = schema::build();
        let existing = Index::open_in_dir(dir).ok().filter(|index| {
            index.schema() == schema && payload(index).is_some_and(|p| p.schema == SCHEMA_VERSION)
        });
        let index = match existing {
            Some(index) => index,
            None => {
                // Another version's files (or a half-made index): start over.
                std::fs::remove_dir_all(dir)
                    .and_then(|()| std::fs::create_dir_all(dir))
                    .map_err(|e| SearchError::Io(format!("{}: {e}", dir.display())))?;
                Index::create_in_dir(dir, schema)?
            }
        };
        SearchIndex::with_index(index, fields, synonyms)
    }

    /// An index in memory, for tests and one-off tools.
    pub fn in_ram(synonyms: Synonyms) -> Result<SearchIndex, SearchError> {
        let (schema, fields) = schema::build();
        SearchIndex::with_index(Index::create_in_ram(schema), fields, synonyms)
    }

    fn with_index(
        index: Index,
        fields: Fields,
        synonyms: Synonyms,
    ) -> Result<SearchIndex, SearchError> {
        schema::register(index.tokenizers());
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(SearchIndex {
            index,
            reader,
            writer: Mutex::new(None),
            fields,
            synonyms,
            categories: RwLock::new(Categories::default()),
        })
    }

    /// The mark the caller stored with the last commit (what the index has seen of the
    /// store), or `None` for a new index.
    pub fn mark(&self) -> Option<String> {
        payload(&self.index).map(|p| p.mark)
    }

    /// Products in the index.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the category tree used for facet names and filters.
    pub fn set_categories(&self, categories: Categories) {
        *self.categories.write().expect("categories lock") = categories;
    }

    pub fn categories(&self) -> Categories {
        self.categories.read().expect("categories lock").clone()
    }

    /// Adds or replaces products. Visible after [`SearchIndex::commit`].
    pub fn upsert(&self, docs: &[ProductDoc]) -> Result<(), SearchError> {
        let categories = self.categories.read().expect("categories lock");
        self.with_writer(|writer, f| {
            for doc in docs {
                writer.delete_term(Term::from_field_i64(f.id, doc.id.0));
                writer.add_document(to_document(f, &categories, doc))?;
            }
            Ok(())
        })
    }

    /// Removes products. Visible after [`SearchIndex::commit`].
    pub fn remove(&self, ids: &[ProductId]) -> Result<(), SearchError> {
        self.with_writer(|writer, f| {
            for id in ids {
                writer.delete_term(Term::from_field_i64(f.id, id.0));
            }
            Ok(())
        })
    }

    /// Removes every product. Visible after [`SearchIndex::commit`].
    pub fn clear(&self) -> Result<(), SearchError> {
        self.with_writer(|writer, _| {
            writer.delete_all_documents()?;
            Ok(())
        })
    }

    /// Makes every change since the last commit durable and visible, recording `mark`.
    pub fn commit(&self, mark: &str) -> Result<(), SearchError> {
        let payload =
            serde_json::to_string(&Payload { schema: SCHEMA_VERSION, mark: mark.to_owned() })
                .expect("a payload always serialises");
        self.with_writer(|writer, _| {
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()?;
            Ok(())
        })?;
        self.reader.reload()?;
        Ok(())
    }

    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut IndexWriter, &Fields) -> Result<T, SearchError>,
    ) -> Result<T, SearchError> {
        let mut guard = self.writer.lock().expect("writer lock");
        if guard.is_none() {
            *guard = Some(self.index.writer(WRITER_HEAP)?);
        }
        f(guard.as_mut().expect("writer just made"), &self.fields)
    }

    /// Answers a request with BM25 ranking (or a field sort), filters and facets.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResults, SearchError> {
        let parsed = request.validate()?;
        let searcher = self.reader.searcher();
        let query = self.full_query(&searcher, &parsed, &request.filters)?;
        let top = TopDocs::with_limit(request.limit).and_offset(request.offset);
        let facets = request.facets.then(|| self.facet_collector(&request.filters));
        let summary = request.facets.then(SummaryCollector::default);
        let (scored, total, facet_counts, summary) = match request.sort {
            Sort::Relevance => collect(&searcher, &query, self.relevance(top), facets, summary)?,
            Sort::Popularity => collect(
                &searcher,
                &query,
                top.order_by_fast_field::<u64>("popularity", Order::Desc),
                facets,
                summary,
            )
            .map(zero_scores)?,
            Sort::PriceAsc | Sort::PriceDesc => collect(
                &searcher,
                &query,
                top.order_by_fast_field::<i64>(
                    "price_cents",
                    if request.sort == Sort::PriceAsc { Order::Asc } else { Order::Desc },
                ),
                facets,
                summary,
            )
            .map(zero_scores)?,
            Sort::Newest => collect(
                &searcher,
                &query,
                top.order_by_fast_field::<i64>("year", Order::Desc),
                facets,
                summary,
            )
            .map(zero_scores)?,
        };
        let mut hits = Vec::with_capacity(scored.len());
        for (score, address) in scored {
            hits.push(self.hit(&searcher, address, score)?);
        }
        Ok(SearchResults {
            total,
            hits,
            facets: self.facets(&request.filters, facet_counts, summary),
            reading: self.reading(&parsed),
        })
    }

    /// The best `n` products for the request's text and filters by BM25, with their
    /// scores: the lexical side of hybrid search.
    pub(crate) fn lexical_candidates(
        &self,
        searcher: &Searcher,
        parsed: &ParsedQuery,
        filters: &Filters,
        n: usize,
    ) -> Result<Vec<(ProductId, f32, DocAddress)>, SearchError> {
        if parsed.is_empty() {
            return Ok(Vec::new());
        }
        let query = self.full_query(searcher, parsed, filters)?;
        let top = searcher.search(&query, &self.relevance(TopDocs::with_limit(n)))?;
        top.into_iter()
            .map(|(score, address)| Ok((self.id_of(searcher, address)?, score, address)))
            .collect()
    }

    /// Which of `ids` pass the filters and exclusions, with their addresses: what the
    /// vector side of hybrid search may show.
    pub(crate) fn admit(
        &self,
        searcher: &Searcher,
        parsed: &ParsedQuery,
        filters: &Filters,
        ids: &[ProductId],
    ) -> Result<HashMap<ProductId, DocAddress>, SearchError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(
            Occur::Must,
            Box::new(TermSetQuery::new(ids.iter().map(|id| Term::from_field_i64(f.id, id.0)))),
        )];
        for filter in self.filter_queries(filters)? {
            clauses.push((Occur::Must, filter));
        }
        clauses.extend(self.exclusions(parsed));
        let found: HashSet<DocAddress> =
            searcher.search(&BooleanQuery::new(clauses), &DocSetCollector)?;
        found.into_iter().map(|a| Ok((self.id_of(searcher, a)?, a))).collect()
    }

    pub(crate) fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    pub(crate) fn hit(
        &self,
        searcher: &Searcher,
        address: DocAddress,
        score: f32,
    ) -> Result<Hit, SearchError> {
        let doc: TantivyDocument = searcher.doc(address)?;
        let f = &self.fields;
        let text = |field| doc.get_first(field).and_then(|v| v.as_str()).map(str::to_owned);
        let int = |field| doc.get_first(field).and_then(|v| v.as_i64());
        Ok(Hit {
            id: ProductId(int(f.id).unwrap_or_default()),
            sku: text(f.sku).unwrap_or_default(),
            title: text(f.title).unwrap_or_default(),
            maker: text(f.maker),
            price_cents: int(f.price).unwrap_or_default(),
            stock: int(f.stock).unwrap_or_default(),
            year: int(f.year).and_then(|y| i32::try_from(y).ok()),
            score,
            lexical_rank: None,
            semantic_rank: None,
        })
    }

    fn id_of(&self, searcher: &Searcher, address: DocAddress) -> Result<ProductId, SearchError> {
        let column = searcher.segment_reader(address.segment_ord).fast_fields().i64("id")?;
        Ok(ProductId(column.first(address.doc_id).unwrap_or_default()))
    }

    pub(crate) fn reading(&self, parsed: &ParsedQuery) -> String {
        let words: Vec<&str> = parsed.positive_words().collect();
        let mut reading = parsed.to_string();
        for (matched, others) in self.synonyms.expand(&words) {
            reading.push_str(&format!("; {matched} also as {}", others.join(" / ")));
        }
        reading
    }

    /// BM25 plus the popularity prior.
    fn relevance(&self, top: TopDocs) -> impl Collector<Fruit = Vec<(f32, DocAddress)>> + use<> {
        top.tweak_score(move |segment: &tantivy::SegmentReader| {
            let popularity =
                segment.fast_fields().u64("popularity").ok().map(|c| c.first_or_default_col(0));
            move |doc, score: f32| {
                let p = popularity.as_ref().map_or(0, |c| c.get_val(doc));
                score + POPULARITY_WEIGHT * (1.0 + p as f32).ln()
            }
        })
    }

    /// The text part (required) with the filters (required, scoring nothing) and the
    /// exclusions; everything when there is no text.
    fn full_query(
        &self,
        searcher: &Searcher,
        parsed: &ParsedQuery,
        filters: &Filters,
    ) -> Result<Box<dyn Query>, SearchError> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        match self.text_query(searcher, parsed) {
            Some(text) => clauses.push((Occur::Must, text)),
            None => clauses.push((Occur::Must, Box::new(AllQuery))),
        }
        for filter in self.filter_queries(filters)? {
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(filter, 0.0))));
        }
        clauses.extend(self.exclusions(parsed));
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    fn text_query(&self, searcher: &Searcher, parsed: &ParsedQuery) -> Option<Box<dyn Query>> {
        let f = &self.fields;
        let mut en = schema::en_analyzer();
        let mut raw = schema::raw_analyzer();
        let mut zh = schema::zh_analyzer();
        let weighted = [
            (f.title, TITLE_BOOST),
            (f.maker, MAKER_BOOST),
            (f.categories, CATEGORY_BOOST),
            (f.publisher, PUBLISHER_BOOST),
            (f.description, DESCRIPTION_BOOST),
            (f.attributes, ATTRIBUTE_BOOST),
        ];
        // The words that select products, and the common ones that only rank them.
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut common: Vec<Box<dyn Query>> = Vec::new();
        let documents = searcher.num_docs();
        let common_postings = COMMON_MIN_POSTINGS.max(documents / COMMON_SHARE);
        let postings =
            |field, term: &str| searcher.doc_freq(&Term::from_field_text(field, term)).unwrap_or(0);
        let mut selecting_words = 0;
        let mut fuzzy_budget = FUZZY_MAX_WORDS;
        // "gift for a kid": "for" and "a" match half the catalog and rank nothing.
        // Dropped unless the query has nothing else ("the who" still searches).
        let content: Vec<&String> = parsed.words.iter().filter(|w| !is_stopword(w)).collect();
        let words = if content.is_empty() { parsed.words.iter().collect() } else { content };
        for word in words {
            let mut alternatives: Vec<Box<dyn Query>> = Vec::new();
            let mut word_postings = 0;
            for term in word_terms(&mut en, word) {
                for (field, boost) in weighted {
                    let n = postings(field, &term);
                    // A term in (nearly) every product of a field ranks nothing there
                    // (its IDF is about 0: "book" among the bookstore's categories), and
                    // walking its postings costs milliseconds.
                    if n > documents - documents / UBIQUITOUS_SHARE {
                        continue;
                    }
                    word_postings += n;
                    alternatives.push(boosted(term_query(field, &term), boost));
                }
            }
            for term in terms(&mut raw, word) {
                let chars = term.chars().count();
                // A word the catalog has is taken as meant ("harry" is not a typo of
                // "harris"); only words it lacks are looked up by edit distance.
                let known = postings(f.fuzzy, &term) > 0;
                if !known
                    && chars >= FUZZY_MIN_CHARS
                    && fuzzy_budget > 0
                    && !term.chars().any(|c| c.is_ascii_digit())
                {
                    fuzzy_budget -= 1;
                    let edits = if chars >= FUZZY_TWO_EDITS { 2 } else { 1 };
                    let fuzzy = FirstLetterFuzzy::new(f.fuzzy, &term, edits);
                    alternatives.push(boosted(Box::new(fuzzy), FUZZY_BOOST));
                }
            }
            if has_cjk(word) {
                for term in terms(&mut zh, word) {
                    word_postings += postings(f.zh_title, &term) + postings(f.zh_body, &term);
                    alternatives.push(boosted(term_query(f.zh_title, &term), ZH_TITLE_BOOST));
                    alternatives.push(boosted(term_query(f.zh_body, &term), ZH_BODY_BOOST));
                }
            }
            if !alternatives.is_empty() {
                let word = Box::new(BooleanQuery::union(alternatives));
                if word_postings > common_postings {
                    common.push(word);
                } else {
                    selecting_words += 1;
                    should.push((Occur::Should, word));
                }
            }
        }
        // Each matched entry brings its group's other entries as one clause scored by
        // the best of them, so a word with many synonyms (or in several groups) counts
        // about once, like the word itself.
        let words: Vec<&str> = parsed.positive_words().collect();
        let mut expansions: Vec<(String, Vec<Box<dyn Query>>)> = Vec::new();
        for (matched, others) in self.synonyms.expand(&words) {
            let queries =
                others.iter().filter_map(|other| self.entry_query(other, &mut en, &mut zh));
            match expansions.iter_mut().find(|(m, _)| *m == matched) {
                Some((_, list)) => list.extend(queries),
                None => expansions.push((matched, queries.collect())),
            }
        }
        for (_, alternatives) in expansions {
            if !alternatives.is_empty() {
                let best = DisjunctionMaxQuery::with_tie_breaker(alternatives, SYNONYM_TIE_BREAKER);
                should.push((Occur::Should, boosted(Box::new(best), SYNONYM_BOOST)));
            }
        }
        let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if !common.is_empty() {
            if should.is_empty() {
                must.extend(common.into_iter().map(|word| (Occur::Must, word)));
            } else if selecting_words == 0 {
                // Common words and synonyms of them: either may be what matches.
                should.extend(common.into_iter().map(|word| (Occur::Should, word)));
            } else {
                // The selecting words as one required clause (their scores summed, as
                // before), the common ones beside it scoring what it matched.
                let selecting = BooleanQuery::new(std::mem::take(&mut should));
                should.push((Occur::Must, Box::new(selecting)));
                should.extend(common.into_iter().map(|word| (Occur::Should, word)));
            }
        }
        for phrase in &parsed.phrases {
            if let Some(q) = self.entry_query(&phrase.join(" "), &mut en, &mut zh) {
                must.push((Occur::Must, q));
            }
        }
        if should.is_empty() && must.is_empty() {
            return None;
        }
        if !should.is_empty() {
            // Inside a Must, so that documents matching only a phrase still need the
            // phrase, and words only rank.
            let words = BooleanQuery::new(should);
            if must.is_empty() {
                return Some(Box::new(words));
            }
            must.push((Occur::Should, Box::new(words)));
        }
        Some(Box::new(BooleanQuery::new(must)))
    }

    /// A word or phrase anywhere in the text fields: one term, or the words in order.
    fn entry_query(
        &self,
        text: &str,
        en: &mut TextAnalyzer,
        zh: &mut TextAnalyzer,
    ) -> Option<Box<dyn Query>> {
        let f = &self.fields;
        let mut alternatives: Vec<Box<dyn Query>> = Vec::new();
        let en_terms = terms(en, text);
        for field in [f.title, f.maker, f.categories, f.description, f.attributes] {
            match en_terms.len() {
                0 => {}
                1 => alternatives.push(term_query(field, &en_terms[0])),
                _ => alternatives.push(Box::new(PhraseQuery::new(
                    en_terms.iter().map(|t| Term::from_field_text(field, t)).collect(),
                ))),
            }
        }
        if has_cjk(text) {
            let zh_terms = terms(zh, text);
            for field in [f.zh_title, f.zh_body] {
                match zh_terms.len() {
                    0 => {}
                    1 => alternatives.push(term_query(field, &zh_terms[0])),
                    // Search-mode jieba emits overlapping words, which a phrase cannot
                    // follow: require every word instead.
                    _ => alternatives.push(Box::new(BooleanQuery::intersection(
                        zh_terms.iter().map(|t| term_query(field, t)).collect(),
                    ))),
                }
            }
        }
        (!alternatives.is_empty())
            .then(|| Box::new(BooleanQuery::union(alternatives)) as Box<dyn Query>)
    }

    fn exclusions(&self, parsed: &ParsedQuery) -> Vec<(Occur, Box<dyn Query>)> {
        let f = &self.fields;
        let mut en = schema::en_analyzer();
        let mut zh = schema::zh_analyzer();
        let mut out: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for word in &parsed.excluded {
            for term in terms(&mut en, word) {
                for field in [f.title, f.maker, f.categories, f.description, f.attributes] {
                    out.push((Occur::MustNot, term_query(field, &term)));
                }
            }
            if has_cjk(word) {
                for term in terms(&mut zh, word) {
                    out.push((Occur::MustNot, term_query(f.zh_title, &term)));
                    out.push((Occur::MustNot, term_query(f.zh_body, &term)));
                }
            }
        }
        out
    }

    fn filter_queries(&self, filters: &Filters) -> Result<Vec<Box<dyn Query>>, SearchError> {
        let f = &self.fields;
        let mut out: Vec<Box<dyn Query>> = Vec::new();
        if let Some(key) = &filters.category {
            let categories = self.categories.read().expect("categories lock");
            if !categories.contains(key) {
                return Err(SearchError::BadFilter(format!("no category {key:?}")));
            }
            let facet = categories.facet(key);
            out.push(Box::new(TermQuery::new(
                Term::from_facet(f.category, &facet),
                IndexRecordOption::Basic,
            )));
        }
        let range = |field, lo: Option<i64>, hi: Option<i64>| -> Box<dyn Query> {
            let bound = |v: Option<i64>| {
                v.map_or(Bound::Unbounded, |v| Bound::Included(Term::from_field_i64(field, v)))
            };
            Box::new(RangeQuery::new(bound(lo), bound(hi)))
        };
        if filters.price_min_cents.is_some() || filters.price_max_cents.is_some() {
            out.push(range(f.price, filters.price_min_cents, filters.price_max_cents));
        }
        if filters.in_stock {
            out.push(range(f.stock, Some(1), None));
        }
        if filters.year_min.is_some() || filters.year_max.is_some() {
            out.push(range(
                f.year,
                filters.year_min.map(i64::from),
                filters.year_max.map(i64::from),
            ));
        }
        Ok(out)
    }

    /// Counts of the children of the filtered category, or of the top categories.
    fn facet_collector(&self, filters: &Filters) -> FacetCollector {
        let mut collector = FacetCollector::for_field("category");
        collector.add_facet(self.facet_parent(filters));
        collector
    }

    fn facet_parent(&self, filters: &Filters) -> Facet {
        match &filters.category {
            Some(key) => self.categories.read().expect("categories lock").facet(key),
            None => Facet::root(),
        }
    }

    fn facets(
        &self,
        filters: &Filters,
        counts: Option<FacetCounts>,
        summary: Option<Summary>,
    ) -> Option<Facets> {
        let (counts, summary) = (counts?, summary?);
        let categories = self.categories.read().expect("categories lock");
        let parent = self.facet_parent(filters);
        let mut by_category: Vec<CategoryCount> = counts
            .get(parent)
            .filter_map(|(facet, count)| {
                let key = facet.to_path().last()?.to_string();
                let name = categories.name(&key).unwrap_or(&key).to_owned();
                Some(CategoryCount { key, name, count })
            })
            .collect();
        by_category.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
        Some(Facets {
            categories: by_category,
            price_bands: summary.price_bands,
            in_stock: summary.in_stock,
        })
    }
}

/// English words too common to rank by. Phrases keep them ("lord of the rings").
/// The terms a query word ranks by: a one-letter piece of a longer word ("s" of
/// "women's") is in half the catalog and says nothing, so it is dropped.
fn word_terms(analyzer: &mut TextAnalyzer, word: &str) -> Vec<String> {
    let mut found = terms(analyzer, word);
    if found.iter().any(|t| t.chars().count() > 1) {
        found.retain(|t| t.chars().count() > 1);
    }
    found
}

fn is_stopword(word: &str) -> bool {
    const STOPWORDS: &[&str] = &[
        "a",
        "about",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "so",
        "some",
        "something",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "with",
        "without",
        "you",
        "your",
    ];
    STOPWORDS.contains(&word.to_lowercase().as_str())
}

fn payload(index: &Index) -> Option<Payload> {
    let metas = index.load_metas().ok()?;
    serde_json::from_str(metas.payload.as_deref()?).ok()
}

fn term_query(field: tantivy::schema::Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::WithFreqs))
}

fn boosted(query: Box<dyn Query>, boost: f32) -> Box<dyn Query> {
    Box::new(BoostQuery::new(query, boost))
}

/// What one search collects: the page (sort key and address), the number of matches,
/// and the facet counts when asked for.
type Collected<K = f32> = (Vec<(K, DocAddress)>, usize, Option<FacetCounts>, Option<Summary>);

fn collect<K>(
    searcher: &Searcher,
    query: &dyn Query,
    top: impl Collector<Fruit = Vec<(K, DocAddress)>>,
    facets: Option<FacetCollector>,
    summary: Option<SummaryCollector>,
) -> Result<Collected<K>, SearchError> {
    Ok(searcher.search(query, &(top, Count, facets, summary))?)
}

/// A page sorted by a field carries no relevance score.
fn zero_scores<K>((top, total, facets, summary): Collected<K>) -> Collected {
    (top.into_iter().map(|(_, a)| (0.0, a)).collect(), total, facets, summary)
}

fn to_document(f: &Fields, categories: &Categories, doc: &ProductDoc) -> TantivyDocument {
    let mut d = TantivyDocument::default();
    d.add_i64(f.id, doc.id.0);
    d.add_text(f.sku, &doc.sku);
    d.add_text(f.title, &doc.title);
    d.add_text(f.fuzzy, &doc.title);
    d.add_text(f.zh_title, &doc.title);
    if let Some(maker) = &doc.maker {
        d.add_text(f.maker, maker);
        d.add_text(f.fuzzy, maker);
        d.add_text(f.zh_title, maker);
    }
    if let Some(publisher) = &doc.publisher {
        d.add_text(f.publisher, publisher);
    }
    for name in &doc.category_names {
        d.add_text(f.categories, name);
        d.add_text(f.zh_body, name);
    }
    for key in &doc.categories {
        d.add_facet(f.category, categories.facet(key));
    }
    if let Some(description) = &doc.description {
        d.add_text(f.description, description);
        d.add_text(f.zh_body, description);
    }
    if let Some(attributes) = &doc.attributes {
        d.add_text(f.attributes, attributes);
        d.add_text(f.zh_body, attributes);
    }
    d.add_i64(f.price, doc.price_cents);
    d.add_i64(f.stock, doc.stock);
    if let Some(year) = doc.year {
        d.add_i64(f.year, i64::from(year));
    }
    d.add_u64(f.popularity, doc.popularity);
    d
}
