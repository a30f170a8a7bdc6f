//! Reads an esark archive folder back, independently of the engine's code:
//! the manifest, the metadata files, and every data line.
//!
//! ```text
//! DIR/manifest.json
//! DIR/cluster/{templates,index_templates,component_templates}.json
//! DIR/indices/<folder>/{settings,mappings,aliases}.json
//! DIR/indices/<folder>/data-s<NNN>-<NNNNN>.jsonl[.lz4|.zst|.gz]
//! ```
//!
//! Folders are always taken from the manifest, never computed from names.
//! Chunks are decompressed with async-compression in a small tokio runtime
//! (accepting concatenated frames / members, as `zstd -d` and `gzip -d` do).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

/// One document as stored in a data line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Doc {
    pub index: String,
    pub id: String,
    pub routing: Option<String>,
    /// The `_source` value exactly as it appears in the line.
    pub source: String,
    /// The manifest path of the chunk holding it.
    pub file: String,
    /// Keys of the line other than `_id`, `_routing`, `_source`.
    pub extra_keys: Vec<String>,
}

/// An archive folder with its parsed manifest.
pub struct Archive {
    pub dir: PathBuf,
    pub manifest: Value,
}

impl Archive {
    /// Opens `dir`; panics if it has no readable `manifest.json`.
    pub fn open(dir: &Path) -> Archive {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let manifest = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}\n{text}", path.display()));
        Archive {
            dir: dir.to_path_buf(),
            manifest,
        }
    }

    /// The absolute path of a manifest-relative path.
    pub fn path(&self, rel: &str) -> PathBuf {
        assert!(
            !rel.starts_with('/') && !rel.contains('\\') && !rel.split('/').any(|c| c == ".."),
            "manifest path {rel:?} must be relative with / separators"
        );
        self.dir.join(rel)
    }

    /// The `indices` entries of the manifest.
    pub fn indices(&self) -> &Vec<Value> {
        self.manifest["indices"]
            .as_array()
            .unwrap_or_else(|| panic!("manifest has no indices array: {}", self.manifest))
    }

    /// The names of the dumped indices, sorted.
    pub fn index_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .indices()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    /// The manifest entry of index `name`.
    pub fn index(&self, name: &str) -> &Value {
        self.indices()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("index {name:?} not in manifest: {:?}", self.index_names()))
    }

    /// The `skipped` entries as (name, reason), sorted.
    pub fn skipped(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self.manifest["skipped"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        (
                            s["name"].as_str().unwrap_or("").to_string(),
                            s["reason"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// The file entries of index `name` of the given kind.
    pub fn files(&self, name: &str, kind: &str) -> Vec<&Value> {
        self.index(name)["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == kind)
            .collect()
    }

    /// The one metadata file (`settings`, `mappings`, `aliases`) of an index.
    pub fn metadata(&self, name: &str, kind: &str) -> Value {
        let files = self.files(name, kind);
        assert_eq!(files.len(), 1, "index {name}: expected one {kind} file");
        self.read_json(files[0]["path"].as_str().unwrap())
    }

    /// The cluster file of `kind`, if the manifest lists one.
    pub fn cluster_file(&self, kind: &str) -> Option<Value> {
        let files = self.manifest["cluster_files"].as_array()?;
        let entry = files.iter().find(|f| f["kind"] == kind)?;
        Some(self.read_json(entry["path"].as_str().unwrap()))
    }

    pub fn read_json(&self, rel: &str) -> Value {
        let path = self.path(rel);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
    }

    /// Every file entry of the manifest (cluster files and index files).
    pub fn all_file_entries(&self) -> Vec<&Value> {
        let mut out: Vec<&Value> = self.manifest["cluster_files"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        for index in self.indices() {
            out.extend(index["files"].as_array().unwrap().iter());
        }
        out
    }

    /// The documents of index `name`, in file order then line order.
    pub fn docs(&self, name: &str) -> Vec<Doc> {
        let mut files: Vec<&str> = self
            .files(name, "data")
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        files.sort();
        let mut out = Vec::new();
        for rel in files {
            let bytes = read_data_file(&self.path(rel));
            for (id, routing, source, extra_keys) in parse_data_lines(&bytes, rel) {
                out.push(Doc {
                    index: name.to_string(),
                    id,
                    routing,
                    source,
                    file: rel.to_string(),
                    extra_keys,
                });
            }
        }
        out
    }

    /// The documents of every index in the manifest.
    pub fn all_docs(&self) -> Vec<Doc> {
        self.index_names()
            .iter()
            .flat_map(|n| self.docs(n))
            .collect()
    }
}

/// Reads a chunk and decompresses it according to its extension.
pub fn read_data_file(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut out = Vec::new();
    let result = if name.ends_with(".jsonl.lz4") {
        let mut dec = async_compression::tokio::bufread::Lz4Decoder::new(&raw[..]);
        dec.multiple_members(true);
        rt.block_on(dec.read_to_end(&mut out))
    } else if name.ends_with(".jsonl.zst") {
        let mut dec = async_compression::tokio::bufread::ZstdDecoder::new(&raw[..]);
        dec.multiple_members(true);
        rt.block_on(dec.read_to_end(&mut out))
    } else if name.ends_with(".jsonl.gz") {
        let mut dec = async_compression::tokio::bufread::GzipDecoder::new(&raw[..]);
        dec.multiple_members(true);
        rt.block_on(dec.read_to_end(&mut out))
    } else if name.ends_with(".jsonl") {
        out = raw;
        Ok(0)
    } else {
        panic!("unknown data file extension: {}", path.display());
    };
    result.unwrap_or_else(|e| panic!("cannot decompress {}: {e}", path.display()));
    out
}

/// Parses data lines into (id, routing, raw source, extra keys). Panics on
/// anything that is not one JSON object per line.
pub fn parse_data_lines(
    bytes: &[u8],
    what: &str,
) -> Vec<(String, Option<String>, String, Vec<String>)> {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    lines
        .iter()
        .enumerate()
        .map(|(n, line)| {
            let fields: BTreeMap<String, Box<RawValue>> = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what} line {}: {e}: {line:?}", n + 1));
            let id = fields
                .get("_id")
                .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
                .unwrap_or_else(|| panic!("{what} line {}: no string _id: {line}", n + 1));
            let routing = fields.get("_routing").map(|v| {
                serde_json::from_str::<String>(v.get()).unwrap_or_else(|_| {
                    panic!("{what} line {}: _routing not a string: {line}", n + 1)
                })
            });
            let source = fields
                .get("_source")
                .unwrap_or_else(|| panic!("{what} line {}: no _source: {line}", n + 1))
                .get()
                .to_string();
            let extra = fields
                .keys()
                .filter(|k| !["_id", "_routing", "_source"].contains(&k.as_str()))
                .cloned()
                .collect();
            (id, routing, source, extra)
        })
        .collect()
}

/// Lowercase hex sha256 of a file.
pub fn sha256_file(path: &Path) -> String {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    hex::encode(Sha256::digest(&bytes))
}

/// Every regular file under `dir`, as `/`-separated paths relative to it.
pub fn files_on_disk(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}
