//! The product vector index: one unit vector per product, searched exactly or through
//! an HNSW graph, persisted to one file so that a start never re-encodes the catalog.
//!
//! Rows are append-only. A product whose text changes gets a new row and its old row is
//! marked dead; a removed product's row is marked dead. Dead rows are skipped by every
//! search and dropped when more than a quarter of the rows are dead (the graph is then
//! rebuilt). Each row remembers a hash of the text it was encoded from, so a sync
//! encodes only products whose text changed, and the index remembers the encoder's
//! fingerprint, so vectors from another model are never mixed in.
//!
//! File layout: the magic `SGVX`, the format version (u32), the metadata's length (u64)
//! and CRC-32 (u32), the metadata (bincode: fingerprint, ids, hashes, liveness, the
//! HNSW links), then the vectors as little-endian f32, then their CRC-32 (u32). The
//! vectors are streamed in both directions, so saving or loading 400 MB of vectors
//! never holds a second copy.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use shopgraph_core::ProductId;

use crate::EmbedError;
use crate::exact;
use crate::hnsw::{Hnsw, HnswParams, Visited};

const MAGIC: &[u8; 4] = b"SGVX";
pub const FORMAT_VERSION: u32 = 1;

/// Below this many live rows an exact scan is fast enough (about a millisecond), and
/// exact is what every search uses.
pub const EXACT_MAX_ROWS: usize = 20_000;

/// How a search is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Exact below [`EXACT_MAX_ROWS`] live rows, HNSW above.
    Auto,
    Exact,
    /// HNSW exploring `ef` candidates.
    Approximate {
        ef: usize,
    },
}

/// The default exploration width for approximate search.
pub const DEFAULT_EF: usize = 96;

#[derive(Serialize, Deserialize)]
struct Meta {
    fingerprint: String,
    dim: usize,
    ids: Vec<i64>,
    text_hashes: Vec<u64>,
    live: Vec<bool>,
    hnsw: Hnsw,
}

pub struct VectorIndex {
    meta: Meta,
    data: Vec<f32>,
    row_of: HashMap<ProductId, u32>,
    visited: Visited,
}

/// A stable 64-bit hash of a product's text (FNV-1a): the same on every run and
/// machine, unlike std's randomly seeded hasher.
pub fn text_hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl VectorIndex {
    pub fn new(fingerprint: &str, dim: usize) -> VectorIndex {
        VectorIndex::with_params(fingerprint, dim, HnswParams::default())
    }

    pub fn with_params(fingerprint: &str, dim: usize, params: HnswParams) -> VectorIndex {
        VectorIndex {
            meta: Meta {
                fingerprint: fingerprint.to_owned(),
                dim,
                ids: Vec::new(),
                text_hashes: Vec::new(),
                live: Vec::new(),
                hnsw: Hnsw::new(params),
            },
            data: Vec::new(),
            row_of: HashMap::new(),
            visited: Visited::new(0),
        }
    }

    pub fn fingerprint(&self) -> &str {
        &self.meta.fingerprint
    }

    pub fn dim(&self) -> usize {
        self.meta.dim
    }

    /// Products with a vector.
    pub fn len(&self) -> usize {
        self.row_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.row_of.is_empty()
    }

    /// Rows held, dead ones included.
    pub fn rows(&self) -> usize {
        self.meta.ids.len()
    }

    pub fn contains(&self, id: ProductId) -> bool {
        self.row_of.contains_key(&id)
    }

    /// The products with a vector, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = ProductId> + '_ {
        self.row_of.keys().copied()
    }

    /// True when `id` has no vector, or one encoded from a different text.
    pub fn is_stale(&self, id: ProductId, text_hash: u64) -> bool {
        match self.row_of.get(&id) {
            Some(&row) => self.meta.text_hashes[row as usize] != text_hash,
            None => true,
        }
    }

    /// The vector of `id`, if it has one.
    pub fn vector(&self, id: ProductId) -> Option<&[f32]> {
        let row = *self.row_of.get(&id)? as usize;
        Some(&self.data[row * self.meta.dim..(row + 1) * self.meta.dim])
    }

    /// Sets the vector of `id`, encoded from a text with hash `text_hash`.
    pub fn upsert(
        &mut self,
        id: ProductId,
        text_hash: u64,
        vector: &[f32],
    ) -> Result<(), EmbedError> {
        if vector.len() != self.meta.dim {
            return Err(EmbedError::Dimension { expected: self.meta.dim, found: vector.len() });
        }
        if let Some(old) = self.row_of.get(&id).copied() {
            if self.meta.text_hashes[old as usize] == text_hash
                && self.vector(id).is_some_and(|v| v == vector)
            {
                return Ok(());
            }
            self.meta.live[old as usize] = false;
        }
        let row = u32::try_from(self.meta.ids.len()).map_err(|_| EmbedError::Full)?;
        self.meta.ids.push(id.0);
        self.meta.text_hashes.push(text_hash);
        self.meta.live.push(true);
        self.data.extend_from_slice(vector);
        self.row_of.insert(id, row);
        self.meta.hnsw.insert(&self.data, self.meta.dim, row, &mut self.visited);
        self.compact_if_sparse();
        Ok(())
    }

    /// Drops the vector of `id`; true if it had one.
    pub fn remove(&mut self, id: ProductId) -> bool {
        let Some(row) = self.row_of.remove(&id) else { return false };
        self.meta.live[row as usize] = false;
        self.compact_if_sparse();
        true
    }

    /// The `k` products most similar to `query` (a unit vector) among those `keep`
    /// accepts, best first, with their cosine similarity.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        method: Method,
        keep: &(dyn Fn(ProductId) -> bool + Sync),
    ) -> Result<Vec<(ProductId, f32)>, EmbedError> {
        if query.len() != self.meta.dim {
            return Err(EmbedError::Dimension { expected: self.meta.dim, found: query.len() });
        }
        let live = &self.meta.live;
        let ids = &self.meta.ids;
        let accept = |row: u32| live[row as usize] && keep(ProductId(ids[row as usize]));
        let method = match method {
            Method::Auto if self.len() <= EXACT_MAX_ROWS => Method::Exact,
            Method::Auto => Method::Approximate { ef: DEFAULT_EF },
            m => m,
        };
        let rows = match method {
            Method::Approximate { ef } => {
                let found = self.meta.hnsw.search(&self.data, self.meta.dim, query, k, ef, &accept);
                if found.len() < k.min(self.len()) {
                    // A narrow filter rejected most of what the walk reached: scan instead
                    // of returning too few.
                    exact::top_k(&self.data, self.meta.dim, query, k, &accept)
                } else {
                    found
                }
            }
            _ => exact::top_k(&self.data, self.meta.dim, query, k, &accept),
        };
        Ok(rows.into_iter().map(|(row, s)| (ProductId(ids[row as usize]), s)).collect())
    }

    /// Rebuilds without dead rows when they are over a quarter of all rows.
    fn compact_if_sparse(&mut self) {
        let rows = self.rows();
        if rows >= 64 && (rows - self.len()) * 4 > rows {
            self.rebuild();
        }
    }

    /// Rewrites the rows without dead ones and relinks the graph from scratch.
    pub fn rebuild(&mut self) {
        let dim = self.meta.dim;
        let mut fresh =
            VectorIndex::with_params(&self.meta.fingerprint, dim, self.meta.hnsw.params());
        fresh.data.reserve(self.len() * dim);
        for row in 0..self.rows() {
            if self.meta.live[row] {
                fresh.meta.ids.push(self.meta.ids[row]);
                fresh.meta.text_hashes.push(self.meta.text_hashes[row]);
                fresh.meta.live.push(true);
                fresh.data.extend_from_slice(&self.data[row * dim..(row + 1) * dim]);
            }
        }
        fresh.relink();
        *self = fresh;
    }

    /// Rebuilds the id map and the graph from the rows (after a load or a compaction).
    fn relink(&mut self) {
        let dim = self.meta.dim;
        self.row_of = (0..self.rows())
            .filter(|&r| self.meta.live[r])
            .map(|r| (ProductId(self.meta.ids[r]), r as u32))
            .collect();
        self.meta.hnsw = Hnsw::new(self.meta.hnsw.params());
        self.visited = Visited::new(self.rows());
        for row in 0..self.rows() as u32 {
            self.meta.hnsw.insert(&self.data, dim, row, &mut self.visited);
        }
    }

    /// Sets many vectors at once (`data` holds `items.len()` rows, one per `(id, text
    /// hash)`). `progress` hears the number of rows linked into the graph.
    pub fn extend(
        &mut self,
        items: &[(ProductId, u64)],
        data: &[f32],
        mut progress: impl FnMut(usize),
    ) -> Result<(), EmbedError> {
        if data.len() != items.len() * self.meta.dim {
            return Err(EmbedError::Dimension {
                expected: items.len() * self.meta.dim,
                found: data.len(),
            });
        }
        for (i, &(id, hash)) in items.iter().enumerate() {
            let dim = self.meta.dim;
            self.upsert(id, hash, &data[i * dim..(i + 1) * dim])?;
            if i % 1024 == 1023 {
                progress(1024);
            }
        }
        progress(items.len() % 1024);
        Ok(())
    }

    /// Writes the index to `path` atomically (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> Result<(), EmbedError> {
        let io = |source| EmbedError::Io { path: path.to_owned(), source };
        let tmp = path.with_extension("tmp");
        let meta =
            bincode::serialize(&self.meta).map_err(|e| EmbedError::Corrupt(e.to_string()))?;
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io)?);
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes()).map_err(io)?;
        out.write_all(&(meta.len() as u64).to_le_bytes()).map_err(io)?;
        out.write_all(&crc32fast::hash(&meta).to_le_bytes()).map_err(io)?;
        out.write_all(&meta).map_err(io)?;
        let mut crc = crc32fast::Hasher::new();
        let mut buf = Vec::with_capacity(1 << 16);
        for chunk in self.data.chunks(1 << 14) {
            buf.clear();
            chunk.iter().for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
            crc.update(&buf);
            out.write_all(&buf).map_err(io)?;
        }
        out.write_all(&crc.finalize().to_le_bytes()).map_err(io)?;
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads an index written by [`VectorIndex::save`]. A file from another encoder
    /// (`fingerprint`), another format version, or one that is damaged is refused.
    pub fn load(path: &Path, fingerprint: &str) -> Result<VectorIndex, EmbedError> {
        let io = |source| EmbedError::Io { path: path.to_owned(), source };
        let mut input = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
        let mut header = [0u8; 20];
        input.read_exact(&mut header).map_err(|_| EmbedError::Corrupt("no header".into()))?;
        if &header[..4] != MAGIC {
            return Err(EmbedError::Corrupt("not a shopgraph vector index".into()));
        }
        let version = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(EmbedError::Stale(format!(
                "format {version}, this binary reads {FORMAT_VERSION}"
            )));
        }
        let meta_len = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let meta_crc = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
        let meta_len = usize::try_from(meta_len)
            .ok()
            .filter(|&n| n <= 1 << 34)
            .ok_or_else(|| EmbedError::Corrupt("metadata length out of range".into()))?;
        let mut meta = Vec::new();
        (&mut input).take(meta_len as u64).read_to_end(&mut meta).map_err(io)?;
        if meta.len() != meta_len || crc32fast::hash(&meta) != meta_crc {
            return Err(EmbedError::Corrupt(
                "metadata is truncated or its checksum does not match".into(),
            ));
        }
        let meta: Meta =
            bincode::deserialize(&meta).map_err(|e| EmbedError::Corrupt(e.to_string()))?;
        if meta.fingerprint != fingerprint {
            return Err(EmbedError::Stale(format!(
                "vectors are from {}, the encoder is {fingerprint}",
                meta.fingerprint
            )));
        }
        let rows = meta.ids.len();
        if meta.text_hashes.len() != rows || meta.live.len() != rows {
            return Err(EmbedError::Corrupt("row tables disagree in length".into()));
        }
        let floats = rows * meta.dim;
        let mut data = Vec::with_capacity(floats);
        let mut crc = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        while data.len() < floats {
            let want = ((floats - data.len()) * 4).min(buf.len());
            input
                .read_exact(&mut buf[..want])
                .map_err(|_| EmbedError::Corrupt("vectors are truncated".into()))?;
            crc.update(&buf[..want]);
            data.extend(
                buf[..want]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
            );
        }
        let mut tail = [0u8; 4];
        input
            .read_exact(&mut tail)
            .map_err(|_| EmbedError::Corrupt("vectors are truncated".into()))?;
        if u32::from_le_bytes(tail) != crc.finalize() {
            return Err(EmbedError::Corrupt("vector checksum does not match".into()));
        }
        if input.read(&mut tail).map_err(io)? != 0 {
            return Err(EmbedError::Corrupt("trailing bytes after the vectors".into()));
        }
        let row_of = (0..rows)
            .filter(|&r| meta.live[r])
            .map(|r| (ProductId(meta.ids[r]), r as u32))
            .collect();
        Ok(VectorIndex { visited: Visited::new(rows), meta, data, row_of })
    }
}
