//! Order-independent digests of documents.
//!
//! A document is hashed as sha256(`_id`, 0, canonical `_source`), where the
//! canonical form has object keys sorted and numbers exactly as written
//! (serde_json with `arbitrary_precision` keeps their text), so the same
//! document hashes the same whichever side sent it and however its keys
//! were ordered. Hashes are summed lane-wise (wrapping), which is
//! independent of order and, unlike XOR, does not cancel duplicates. Each
//! side is split into [`BUCKETS`] buckets by id, so that a difference can be
//! located by re-reading only the buckets that differ.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Buckets per index.
pub const BUCKETS: usize = 256;

/// Why a document cannot be hashed.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The `_source` is not one JSON value.
    #[error("{0}")]
    Source(serde_json::Error),
    #[error("{0}")]
    Canonical(serde_json::Error),
}

/// A document's identity and content hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocHash {
    pub bucket: usize,
    pub hash: [u8; 32],
}

/// Deepest nesting put in canonical form. Parsing, serializing and
/// dropping a `Value` recurse once per level, so the depth is bounded here
/// rather than by serde_json's default limit of 128, which failed verify
/// on documents the servers store and esark dumps and restores fine. A
/// document nested deeper than this is hashed by its bytes as stored: both
/// sides hold the bytes the restore sent, so it still matches, only a
/// reordering of its keys would count as a change.
pub const MAX_CANONICAL_DEPTH: usize = 512;

/// Hashes one document; `id_json` and `source_json` are raw JSON.
pub fn doc_hash(id: &str, source_json: &str) -> Result<DocHash, DigestError> {
    let canonical = canonical(source_json)?;
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    h.update([0u8]);
    h.update(&canonical);
    let hash: [u8; 32] = h.finalize().into();
    Ok(DocHash {
        bucket: bucket_of(id),
        hash,
    })
}

/// The canonical form of a `_source` (keys sorted, numbers as written),
/// or its bytes when it is nested deeper than [`MAX_CANONICAL_DEPTH`].
fn canonical(source_json: &str) -> Result<std::borrow::Cow<'_, [u8]>, DigestError> {
    use serde::Deserialize as _;
    if nesting_depth(source_json.as_bytes()) > MAX_CANONICAL_DEPTH {
        return Ok(std::borrow::Cow::Borrowed(source_json.as_bytes()));
    }
    let mut de = serde_json::Deserializer::from_str(source_json);
    de.disable_recursion_limit();
    let value = Value::deserialize(&mut de).map_err(DigestError::Source)?;
    de.end().map_err(DigestError::Source)?;
    serde_json::to_vec(&value)
        .map(std::borrow::Cow::Owned)
        .map_err(DigestError::Canonical)
}

/// The deepest nesting of arrays and objects in JSON text (strings
/// skipped), without parsing it.
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The bucket of an id (from a hash of the id alone).
pub fn bucket_of(id: &str) -> usize {
    let h = Sha256::digest(id.as_bytes());
    (u16::from_le_bytes([h[0], h[1]]) as usize) % BUCKETS
}

/// Count and lane-wise sum of hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sum {
    pub count: u64,
    lanes: [u64; 4],
}

impl Sum {
    pub fn add(&mut self, hash: &[u8; 32]) {
        self.count += 1;
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            let word = u64::from_le_bytes(hash[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            *lane = lane.wrapping_add(word);
        }
    }
}

/// The digest of one side of an index: a [`Sum`] per bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDigest {
    pub buckets: Vec<Sum>,
}

impl Default for IndexDigest {
    fn default() -> Self {
        IndexDigest {
            buckets: vec![Sum::default(); BUCKETS],
        }
    }
}

impl IndexDigest {
    pub fn add(&mut self, doc: &DocHash) {
        self.buckets[doc.bucket].add(&doc.hash);
    }

    /// Adds another digest's documents to this one.
    pub fn merge(&mut self, other: &IndexDigest) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.count += theirs.count;
            for (a, b) in mine.lanes.iter_mut().zip(theirs.lanes) {
                *a = a.wrapping_add(b);
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.count).sum()
    }

    /// Buckets whose sums differ.
    pub fn differing(&self, other: &IndexDigest) -> Vec<usize> {
        (0..BUCKETS)
            .filter(|&b| self.buckets[b] != other.buckets[b])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a document nested 200 levels (dumped and restored fine)
    /// ended verify with "recursion limit exceeded".
    #[test]
    fn deeply_nested_documents_are_hashed() {
        let nested = |depth: usize, leaf: &str| {
            format!("{}{leaf}{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        };
        let a = doc_hash("x", &nested(200, "1")).unwrap();
        assert_eq!(a, doc_hash("x", &nested(200, "1")).unwrap());
        assert_ne!(a, doc_hash("x", &nested(200, "2")).unwrap());
        // Canonical up to the bound (on a test thread's stack), bytes past it.
        let spaced = format!("{{ \"b\":0,{}", &nested(MAX_CANONICAL_DEPTH - 1, "1")[1..]);
        let packed = format!("{{\"b\":0,{}", &nested(MAX_CANONICAL_DEPTH - 1, "1")[1..]);
        assert_eq!(
            doc_hash("x", &spaced).unwrap(),
            doc_hash("x", &packed).unwrap()
        );
        let deep = nested(100_000, "1");
        assert_eq!(nesting_depth(deep.as_bytes()), 100_000);
        assert_eq!(doc_hash("x", &deep).unwrap(), doc_hash("x", &deep).unwrap());
        assert_eq!(nesting_depth(br#"{"a":"{[{[","b":[1,{"c":"\"}"}]}"#), 3);
    }

    #[test]
    fn canonical_form_ignores_key_order_and_escapes_but_not_number_text() {
        let a = doc_hash("1", r#"{"b":1,"a":{"y":2,"x":"é"}}"#).unwrap();
        let b = doc_hash("1", r#"{"a":{"x":"\u00e9","y":2},"b":1}"#).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, doc_hash("2", r#"{"b":1,"a":{"y":2,"x":"é"}}"#).unwrap());
        let big = doc_hash("1", r#"{"n":9223372036854775807}"#).unwrap();
        assert_ne!(big, doc_hash("1", r#"{"n":9223372036854775806}"#).unwrap());
        assert_ne!(
            doc_hash("1", r#"{"n":1.50}"#).unwrap(),
            doc_hash("1", r#"{"n":1.5}"#).unwrap()
        );
        assert_ne!(
            doc_hash("1", r#"{"n":18446744073709551617}"#).unwrap(),
            doc_hash("1", r#"{"n":18446744073709551616}"#).unwrap()
        );
    }

    #[test]
    fn sums_are_order_independent_and_count_duplicates() {
        let docs: Vec<DocHash> = (0..50)
            .map(|i| doc_hash(&i.to_string(), &format!("{{\"v\":{i}}}")).unwrap())
            .collect();
        let mut forward = IndexDigest::default();
        docs.iter().for_each(|d| forward.add(d));
        let mut backward = IndexDigest::default();
        docs.iter().rev().for_each(|d| backward.add(d));
        assert_eq!(forward, backward);
        assert!(forward.differing(&backward).is_empty());
        let mut dup = backward.clone();
        dup.add(&docs[0]);
        dup.add(&docs[0]);
        assert_eq!(forward.differing(&dup), vec![docs[0].bucket]);
    }
}
