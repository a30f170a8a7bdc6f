//! Chunk compression: chosen by the user for writing, and derived from the
//! file name alone for reading, so that a chunk is self-describing.

use std::fmt;
use std::str::FromStr;

use async_compression::tokio::bufread::{GzipDecoder, Lz4Decoder, ZstdDecoder};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, BufReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// lz4 frames, one per page (archive format 6).
    Lz4,
    Zstd,
    Gzip,
    None,
}

impl Compression {
    /// What a dump writes when not told: lz4.
    ///
    /// Compression was the largest client cost of a dump, and
    /// decompressing the largest of a restore (which reads every chunk
    /// twice: once to check it before the first write, once to load it).
    /// On the benchmark's 100,000 documents (88 MB of lines), zstd 1
    /// compressed at 250-320 MB/s and decompressed at 500-700 MB/s on its
    /// machine, lz4 at 480-580 and ~2,300 MB/s (`zstd -b1` and `lz4 -b1`
    /// on those lines, side by side), for archives 1.7x larger (ratio 3.1
    /// instead of 5.2); zstd's negative levels were no faster there
    /// (246-303 MB/s for ratios 4.3 down to 3.5). Elasticsearch stores its
    /// own indices with LZ4 by default for the same reason. `--compression
    /// zstd` is there for archives that must be small.
    pub const DEFAULT: Compression = Compression::Lz4;

    /// The extension a data chunk gets, after `.jsonl`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Lz4 => "jsonl.lz4",
            Compression::Zstd => "jsonl.zst",
            Compression::Gzip => "jsonl.gz",
            Compression::None => "jsonl",
        }
    }

    /// The compression of a file, from its name.
    pub fn from_file_name(name: &str) -> Compression {
        if name.ends_with(".lz4") {
            Compression::Lz4
        } else if name.ends_with(".zst") || name.ends_with(".zstd") {
            Compression::Zstd
        } else if name.ends_with(".gz") || name.ends_with(".gzip") {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// The level used when none is given: lz4 1 (its fast mode), zstd 1,
    /// gzip 6.
    ///
    /// zstd 1 rather than zstd's own default of 3: a dump shares the
    /// machine's cores with the cluster it reads when both run on one host,
    /// and compression is the largest client cost per document. On the
    /// benchmark's 100,000 documents (one frame per page) level 1 took 21 %
    /// less client CPU than level 3 (0.33 s vs 0.42 s user time) for an
    /// archive 0.5 % larger; document bodies with long repeated text favour
    /// level 3 more, and `--level` is there for them.
    pub fn default_level(self) -> i32 {
        match self {
            Compression::Lz4 => 1,
            Compression::Zstd => 1,
            Compression::Gzip => 6,
            Compression::None => 0,
        }
    }

    /// The accepted range of levels.
    pub fn level_range(self) -> std::ops::RangeInclusive<i32> {
        match self {
            // 1-2: fast mode; 3-12: lz4 HC.
            Compression::Lz4 => 1..=12,
            Compression::Zstd => 1..=19,
            Compression::Gzip => 1..=9,
            Compression::None => 0..=0,
        }
    }
}

/// A compression name that is not `lz4`, `zstd`, `gzip` or `none`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?} (lz4, zstd, gzip or none)")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;
    fn from_str(s: &str) -> Result<Self, UnknownCompression> {
        match s {
            "lz4" => Ok(Compression::Lz4),
            "zstd" | "zst" => Ok(Compression::Zstd),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "none" => Ok(Compression::None),
            other => Err(UnknownCompression(other.to_string())),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        })
    }
}

/// Read buffer after a decoder.
const DECODED_BUFFER: usize = 256 * 1024;

/// `raw` decompressed as `compression` says. Concatenated members (gzip)
/// and frames (zstd and lz4: one per page) are read as one stream, as
/// `gzip -d`, `zstd -d` and `lz4 -d` read them.
pub fn decoding_reader<R>(raw: R, compression: Compression) -> Box<dyn AsyncBufRead + Unpin + Send>
where
    R: AsyncBufRead + Unpin + Send + 'static,
{
    match compression {
        Compression::Lz4 => {
            let mut decoder = Lz4Decoder::new(raw);
            decoder.multiple_members(true);
            Box::new(BufReader::with_capacity(DECODED_BUFFER, decoder))
        }
        Compression::Zstd => {
            let mut decoder = ZstdDecoder::new(raw);
            decoder.multiple_members(true);
            Box::new(BufReader::with_capacity(DECODED_BUFFER, decoder))
        }
        Compression::Gzip => {
            let mut decoder = GzipDecoder::new(raw);
            decoder.multiple_members(true);
            Box::new(BufReader::with_capacity(DECODED_BUFFER, decoder))
        }
        Compression::None => Box::new(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::Compression::{self, *};

    #[test]
    fn from_file_name_table() {
        let cases = [
            ("data-s000-00000.jsonl.zst", Zstd),
            ("x.zstd", Zstd),
            ("data-s000-00000.jsonl.lz4", Lz4),
            ("data-s000-00000.jsonl.gz", Gzip),
            ("index.json.gzip", Gzip),
            ("data-s000-00000.jsonl", None),
            ("index.json", None),
            ("weird.zst.json", None),
        ];
        for (name, want) in cases {
            assert_eq!(Compression::from_file_name(name), want, "{name}");
        }
    }

    #[test]
    fn extension_round_trips() {
        for c in [Lz4, Zstd, Gzip, None] {
            assert_eq!(
                Compression::from_file_name(&format!("a.{}", c.extension())),
                c
            );
            assert_eq!(c.to_string().parse::<Compression>().unwrap(), c);
        }
    }
}
