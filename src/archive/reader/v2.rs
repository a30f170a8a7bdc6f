//! Reader for archive format version 2: the layout of version 1 (see
//! [`super::v1`]) plus cluster metadata files under `cluster/`:
//!
//! ```text
//! cluster/
//! ├── ilm_policies.json        {name: {"policy": …}}      (Elasticsearch)
//! ├── ism_policies.json        {id: {"policy": …}}        (OpenSearch)
//! ├── ingest_pipelines.json    {id: pipeline}
//! ├── stored_scripts.json      {id: {"script": …}}
//! ├── data_streams.json        {name: {"template": …}}
//! └── cluster_settings.json    {"persistent": {"persistent": …}}   (--include-cluster-settings)
//! ```
//!
//! Each holds what the matching `PUT` takes back, keyed by name.

use super::super::manifest::{Manifest, ManifestError};

/// Parses a version 2 manifest.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let manifest: Manifest = serde_json::from_slice(bytes)?;
    manifest.refuse_encryption(2)?;
    Ok(manifest)
}
