//! The index's fields and the analyzers that turn text into terms.
//!
//! Every text field is indexed by the `en` analyzer (words, lower case, accents folded,
//! English stemming), so "Lenses" finds "lens". Two extra fields serve the other needs:
//! `fuzzy` holds the title and maker words unstemmed, for typo-tolerant matching (a
//! typo in a stemmed word is not a typo of its stem), and `zh` holds all the text cut
//! by jieba, so a Chinese query finds Chinese words inside unspaced text: `zh_title`
//! (title and maker) and `zh_body` (categories, description, attributes). Every
//! product gets both, whatever its language, so BM25's length statistics for them are
//! those of the whole catalog, not of its few Chinese products.

use tantivy::schema::{
    FAST, FacetOptions, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema,
    TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    TextAnalyzer, TokenizerManager,
};

pub(crate) const EN: &str = "shop_en";
pub(crate) const RAW: &str = "shop_raw";
pub(crate) const ZH: &str = "shop_zh";

/// Bump when fields or analyzers change: an index built by another version is rebuilt.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub(crate) id: Field,
    pub(crate) sku: Field,
    pub(crate) title: Field,
    pub(crate) maker: Field,
    pub(crate) publisher: Field,
    pub(crate) categories: Field,
    pub(crate) description: Field,
    pub(crate) attributes: Field,
    pub(crate) fuzzy: Field,
    pub(crate) zh_title: Field,
    pub(crate) zh_body: Field,
    pub(crate) category: Field,
    pub(crate) price: Field,
    pub(crate) stock: Field,
    pub(crate) year: Field,
    pub(crate) popularity: Field,
}

pub(crate) fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = |analyzer: &str, stored: bool| {
        let opts = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(analyzer)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        if stored { opts.set_stored() } else { opts }
    };
    let fields = Fields {
        id: b.add_i64_field("id", INDEXED | FAST | STORED),
        sku: b.add_text_field("sku", STRING | STORED),
        title: b.add_text_field("title", text(EN, true)),
        maker: b.add_text_field("maker", text(EN, true)),
        publisher: b.add_text_field("publisher", text(EN, true)),
        categories: b.add_text_field("categories", text(EN, false)),
        description: b.add_text_field("description", text(EN, false)),
        attributes: b.add_text_field("attributes", text(EN, false)),
        fuzzy: b.add_text_field("fuzzy", text(RAW, false)),
        zh_title: b.add_text_field("zh_title", text(ZH, false)),
        zh_body: b.add_text_field("zh_body", text(ZH, false)),
        category: b.add_facet_field("category", FacetOptions::default()),
        price: b.add_i64_field("price_cents", INDEXED | FAST | STORED),
        stock: b.add_i64_field("stock", INDEXED | FAST | STORED),
        year: b.add_i64_field("year", INDEXED | FAST | STORED),
        popularity: b.add_u64_field("popularity", FAST | STORED),
    };
    (b.build(), fields)
}

/// Words longer than this are not words (base64, URLs): dropped rather than indexed.
const MAX_TOKEN_BYTES: usize = 60;

pub(crate) fn en_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(Stemmer::new(Language::English))
        .build()
}

pub(crate) fn raw_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// jieba in search mode (long words also yield their shorter words), lower-cased.
/// Whitespace and punctuation tokens are dropped by [`crate::query`] at query time and
/// match nothing useful at index time.
pub(crate) fn zh_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(tantivy_jieba::JiebaTokenizer::with_search_mode(true))
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .build()
}

pub(crate) fn register(manager: &TokenizerManager) {
    manager.register(EN, en_analyzer());
    manager.register(RAW, raw_analyzer());
    manager.register(ZH, zh_analyzer());
}

/// The terms `analyzer` makes of `text`, in order, without whitespace or punctuation.
pub(crate) fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let t = &stream.token().text;
        if t.chars().any(char::is_alphanumeric) {
            out.push(t.clone());
        }
    }
    out
}

/// True for text with Chinese, Japanese or Korean ideographs (what jieba should cut).
pub(crate) fn has_cjk(text: &str) -> bool {
    text.chars().any(|c| {
        matches!(c as u32,
            0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F | 0x3040..=0x30FF | 0xAC00..=0xD7AF)
    })
}
