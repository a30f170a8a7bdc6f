//! Reader for archive format version 1.
//!
//! ```text
//! backup/
//! ├── manifest.json                      written last; lists and checksums every file below
//! ├── cluster/
//! │   ├── templates.json                 legacy templates   {name: body}
//! │   ├── index_templates.json           composable templates {name: body}
//! │   └── component_templates.json       component templates {name: body}
//! └── indices/
//!     └── <folder>/                      see `archive::naming`; the manifest maps index -> folder
//!         ├── settings.json              {"index": {...}} without server-generated keys
//!         ├── mappings.json
//!         ├── aliases.json               {alias: {filter, index_routing, search_routing, is_write_index}}
//!         └── data-s<SSS>-<NNNNN>.jsonl[.zst|.gz]
//!                                        one {"_id":…,"_routing":…,"_source":…} per line,
//!                                        _source byte-for-byte as the server sent it
//! ```

use super::super::manifest::{FileKind, Manifest, ManifestError};
use super::super::Version;

pub use super::FileCheck;

/// Parses a version 1 manifest. Version 1 knows indices and the three kinds
/// of templates only.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let manifest: Manifest = serde_json::from_slice(bytes)?;
    if let Some(f) = manifest.files().find(|f| !is_v1_kind(f.kind)) {
        return Err(ManifestError::KindTooNew {
            path: f.path.clone(),
            kind: f.kind,
            version: 1,
        });
    }
    manifest.refuse_encryption(1)?;
    Ok(manifest)
}

fn is_v1_kind(kind: FileKind) -> bool {
    matches!(
        kind,
        FileKind::Settings
            | FileKind::Mappings
            | FileKind::Aliases
            | FileKind::Data
            | FileKind::Templates
            | FileKind::IndexTemplates
            | FileKind::ComponentTemplates
    )
}

/// Version 2 added cluster metadata files (lifecycle policies, pipelines,
/// scripts, data streams, cluster settings); a version 1 archive is a
/// version 2 archive without them, so the model needs no change. The
/// manifest keeps saying version 1, which is what the files are.
pub fn to_v2(manifest: Manifest) -> Manifest {
    debug_assert_eq!(manifest.format_version, Version::V1);
    manifest
}
