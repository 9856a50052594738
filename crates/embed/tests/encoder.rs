//! The real encoder against an independent forward pass (sentence-transformers on
//! PyTorch), stored in `minilm-l6-v2.jsonl`, and the vector index on real vectors.

use std::path::PathBuf;

use shopgraph_core::ProductId;
use shopgraph_embed::{Encoder, Method, VectorIndex, text_hash};

/// The model fetched by `scripts/setup.sh` (under `$SHOPGRAPH_CACHE`, default `.cache/`).
fn model_dir() -> PathBuf {
    let cache = std::env::var_os("SHOPGRAPH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache"));
    let dir = cache.join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run scripts/setup.sh",
        dir.display()
    );
    dir
}

struct Reference {
    text: String,
    embedding: Vec<f32>,
}

fn references() -> Vec<Reference> {
    include_str!("minilm-l6-v2.jsonl")
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("reference line is JSON");
            Reference {
                text: v["text"].as_str().expect("text").to_owned(),
                embedding: v["embedding"]
                    .as_array()
                    .expect("embedding")
                    .iter()
                    .map(|x| x.as_f64().expect("number") as f32)
                    .collect(),
            }
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn matches_the_reference_forward_pass_one_by_one_and_batched() {
    let encoder = Encoder::load(&model_dir()).expect("model loads");
    let refs = references();
    assert!(refs.len() >= 10);
    assert_eq!(encoder.dim(), 384);
    for r in &refs {
        let got = encoder.encode(&[&r.text]).expect("encodes");
        let diff = max_abs_diff(&got, &r.embedding);
        assert!(diff < 1e-5, "{:?}: max difference {diff}", r.text);
    }
    // Batched with texts of different lengths: padding must not change any vector.
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();
    let got = encoder.encode(&texts).expect("encodes");
    for (row, r) in got.chunks_exact(384).zip(&refs) {
        let diff = max_abs_diff(row, &r.embedding);
        assert!(diff < 1e-5, "{:?} in a batch: max difference {diff}", r.text);
    }
    // Sorted into batches of 3 and put back in order.
    let mut seen = 0;
    let all = encoder.encode_all(&texts, 3, |n| seen += n).expect("encodes");
    assert_eq!(seen, texts.len());
    assert!(max_abs_diff(&all, &got) < 1e-5);
}

#[test]
fn vectors_are_unit_length_and_odd_inputs_encode() {
    let encoder = Encoder::load(&model_dir()).expect("model loads");
    let long = "book ".repeat(50_000); // far past 256 tokens and the character cap
    let texts = ["", "   ", "维基百科是一个自由的百科全书", "\u{1F600}\u{0301}", &long, "a\0b"];
    let got = encoder.encode(&texts).expect("encodes");
    assert_eq!(got.len(), texts.len() * 384);
    for row in got.chunks_exact(384) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        assert!(row.iter().all(|x| x.is_finite()));
    }
    assert!(encoder.encode(&[]).expect("encodes").is_empty());
}

#[test]
fn meaning_ranks_above_words_on_real_vectors() {
    let encoder = Encoder::load(&model_dir()).expect("model loads");
    let products = [
        "Trail running shoes with a grippy sole",
        "Chef's knife, 20 cm, stainless steel",
        "Cast iron frying pan",
        "Waterproof hiking jacket",
        "Mystery novel set in Victorian London",
    ];
    let vectors = encoder.encode(&products).expect("encodes");
    let mut index = VectorIndex::new(encoder.fingerprint(), encoder.dim());
    for (i, (text, v)) in products.iter().zip(vectors.chunks_exact(384)).enumerate() {
        index.upsert(ProductId(i as i64 + 1), text_hash(text), v).expect("upsert");
    }
    let query = encoder.encode(&["athletic footwear for jogging"]).expect("encodes");
    let hits = index.search(&query, 2, Method::Exact, &|_| true).expect("search");
    assert_eq!(hits[0].0, ProductId(1), "{hits:?}");
    let query = encoder.encode(&["a detective story"]).expect("encodes");
    let hits = index.search(&query, 1, Method::Exact, &|_| true).expect("search");
    assert_eq!(hits[0].0, ProductId(5), "{hits:?}");
}
