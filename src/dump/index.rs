//! Dumping one index (its metadata files, then its documents through the
//! [`super::pipeline`]), and the cluster-wide files: templates and the
//! other kinds of cluster metadata. A failure of one index is an
//! [`IndexFailure`] the run records, not the end of the run.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::checkpoint::{Checkpointer, IndexCheckpoint};
use super::pipeline::{dump_data, DataJob, PipelineError};
use super::{DumpConfig, DumpError};
use crate::archive::manifest::{FileEntry, FileKind, IndexEntry};
use crate::archive::naming::folder_name;
use crate::archive::writer::ArchiveWriter;
use crate::archive::ArchiveError;
use crate::catalog::{
    extra_file, read_metadata, read_templates, IndexMetadata, MetadataBatches, Selected,
};
use crate::cluster::extras::{ExtraKind, Offered};
use crate::cluster::{Cluster, ClusterError};
use crate::job::{CancellationToken, Events};
use crate::source::slice::SliceCount;

/// Writes lifecycle policies, ingest pipelines, stored scripts, data
/// streams (and with `cluster_settings`, persistent cluster settings), each
/// kind to its own file. A kind the cluster does not offer is a warning
/// naming it, not a failure.
pub(super) async fn dump_extras(
    cluster: &Cluster,
    archive: &ArchiveWriter,
    cluster_settings: bool,
    events: &Events,
) -> Result<Vec<FileEntry>, DumpError> {
    let mut kinds = ExtraKind::for_flavor(cluster.flavor()).to_vec();
    if cluster_settings {
        kinds.push(ExtraKind::ClusterSettings);
    }
    let mut files = Vec::new();
    // What the cluster does not offer is one warning line for the run.
    let mut not_offered: Vec<(&str, String)> = Vec::new();
    for kind in kinds {
        match cluster.read_extra(kind).await? {
            Offered::Yes(items) => {
                let (path, file_kind) = extra_file(kind);
                files.push(archive.write_json(path, file_kind, &items).await?);
            }
            Offered::No(reason) => not_offered.push((kind.describe(), reason)),
        }
    }
    if let Some((_, reason)) = not_offered.first() {
        let kinds: Vec<&str> = not_offered.iter().map(|(k, _)| *k).collect();
        events.warn(format!(
            "not dumped, the cluster does not offer them: {} (first: {reason})",
            kinds.join(", ")
        ));
    }
    Ok(files)
}

/// Writes the three kinds of templates, each to its own file.
pub(super) async fn dump_templates(
    cluster: &Cluster,
    archive: &ArchiveWriter,
    events: &Events,
) -> Result<Vec<FileEntry>, DumpError> {
    archive.create_dir("cluster").await?;
    let set = read_templates(cluster, events).await?;
    let mut files = vec![
        archive
            .write_json("cluster/templates.json", FileKind::Templates, &set.legacy)
            .await?,
    ];
    if let Some(index) = &set.index {
        files.push(
            archive
                .write_json(
                    "cluster/index_templates.json",
                    FileKind::IndexTemplates,
                    index,
                )
                .await?,
        );
    }
    if let Some(component) = &set.component {
        files.push(
            archive
                .write_json(
                    "cluster/component_templates.json",
                    FileKind::ComponentTemplates,
                    component,
                )
                .await?,
        );
    }
    Ok(files)
}

/// Dumps one index: metadata files, then data, continuing from what an
/// earlier run recorded. Errors come back as text so that one failed index
/// does not stop the others.
#[allow(clippy::too_many_arguments)]
pub(super) async fn dump_index(
    cluster: &Arc<Cluster>,
    archive: &ArchiveWriter,
    config: &DumpConfig,
    selected: &Selected,
    events: &Events,
    checkpointer: &Arc<Checkpointer>,
    earlier: Option<IndexCheckpoint>,
    readers: Arc<tokio::sync::Semaphore>,
    batches: &MetadataBatches,
    cancel: CancellationToken,
) -> Result<IndexEntry, IndexFailure> {
    let name = selected.name.as_str();
    let data_stream = selected.data_stream.is_some();
    let (meta, _) = read_metadata(cluster, selected, Some(batches), false, None).await?;
    // Read before `meta` is taken apart below.
    let page_size =
        crate::source::page_size::from_disk(meta.page_size(config.page_size), selected.doc_bytes);
    // An index listed with no more documents than a page holds is read in
    // one search, whose own total stands for the `_count`
    // (crate::source::whole); unless slices were asked for, or an earlier
    // run began it with slices.
    let whole = !data_stream
        && matches!(config.slices, SliceCount::Auto | SliceCount::Fixed(1))
        && selected
            .listed_docs
            .is_some_and(|docs| docs <= page_size as u64)
        && earlier.as_ref().is_none_or(|e| e.slice_count <= 1);
    let counted = match whole {
        true => None,
        false => Some(cluster.count(name, config.query.as_deref()).await?),
    };
    let expected = counted.or(selected.listed_docs).unwrap_or_default();
    // Said before any file is written: no page of it could be archived.
    if !data_stream && expected > 0 && source_disabled(&meta.mappings) {
        return Err(IndexFailure::of_index(format!(
            "_source is disabled in its mapping: its {expected} documents cannot be read back; leave the index out with --exclude"
        )));
    }
    // A resumed index keeps the slice count its chunk names were made with.
    let slices = match &earlier {
        Some(e) if e.slice_count > 0 => e.slice_count,
        _ if whole => 1,
        _ => config.slices.resolve(meta.shards()),
    };
    let earlier_slices = earlier.map(|e| e.slices).unwrap_or_default();
    let IndexMetadata {
        settings,
        mappings,
        aliases,
    } = meta;

    let folder = format!("indices/{}", folder_name(name));
    let keep: HashSet<String> = earlier_slices
        .values()
        .flat_map(|s| s.chunks.iter().map(|c| c.path.clone()))
        .collect();
    let write_meta = async {
        archive.create_dir(&folder).await?;
        archive.prune(&folder, &keep).await?;
        let mut files = Vec::new();
        // A data stream's metadata is its index template's.
        let meta_files = if data_stream {
            Vec::new()
        } else {
            vec![
                ("settings.json", FileKind::Settings, &settings),
                ("mappings.json", FileKind::Mappings, &mappings),
                ("aliases.json", FileKind::Aliases, &aliases),
            ]
        };
        for (file, kind, value) in meta_files {
            files.push(
                archive
                    .write_json(&format!("{folder}/{file}"), kind, value)
                    .await?,
            );
        }
        checkpointer.update(|cp| {
            cp.indices.entry(name.to_string()).or_default().slice_count = slices;
        })?;
        Ok::<_, ArchiveError>(files)
    };
    let mut files = write_meta.await?;

    events.plan(name, None, expected);
    let counter = events.start(name, 0, 0);
    let job = DataJob {
        index: name.to_string(),
        folder: folder.clone(),
        slices,
        page_size,
        compression: config.compression,
        level: config.level,
        file_size: config.file_size,
        reader: config.reader,
        query: config.query.clone(),
        readers,
        whole_first: whole,
    };
    let (data, docs) = match dump_data(
        cluster.clone(),
        archive.clone(),
        &job,
        counter,
        checkpointer.clone(),
        earlier_slices,
        cancel,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return Err(e.into()),
    };
    // Read in one search, the index's count is that search's total.
    let expected = match counted {
        Some(counted) => {
            if docs != counted {
                events.warn(format!(
                    "index {name:?}: {docs} documents dumped, _count said {counted} before the dump (was it written to meanwhile?)"
                ));
            }
            counted
        }
        None => docs,
    };
    files.extend(data);
    let entry = IndexEntry {
        name: name.to_string(),
        folder,
        docs,
        expected_docs: expected,
        slices,
        files,
        data_stream,
    };
    checkpointer
        .update(|cp| cp.indices.entry(name.to_string()).or_default().done = Some(entry.clone()))?;
    Ok(entry)
}

/// Why an index was not dumped, and whether the cause is the run's rather
/// than the index's: lost credentials, an unreachable cluster or a full
/// disk would fail every index alike, so the run stops (resumable)
/// instead of listing them as failed.
#[derive(Debug)]
pub(super) struct IndexFailure {
    pub(super) reason: String,
    /// A failure of the whole run (credentials, the cluster gone, a full
    /// disk), not of this index alone.
    pub(super) run_level: bool,
}

impl IndexFailure {
    fn of_index(reason: String) -> IndexFailure {
        IndexFailure {
            reason,
            run_level: false,
        }
    }
}

impl From<ClusterError> for IndexFailure {
    fn from(e: ClusterError) -> IndexFailure {
        let run_level = matches!(
            e,
            ClusterError::Unauthorized { .. }
                | ClusterError::Unreachable { .. }
                | ClusterError::Transport { .. }
                | ClusterError::TlsRefused { .. }
                | ClusterError::AwsSigning { .. }
        );
        IndexFailure {
            reason: e.to_string(),
            run_level,
        }
    }
}

impl From<ArchiveError> for IndexFailure {
    fn from(e: ArchiveError) -> IndexFailure {
        IndexFailure {
            reason: e.to_string(),
            run_level: true,
        }
    }
}

impl From<PipelineError> for IndexFailure {
    fn from(e: PipelineError) -> IndexFailure {
        match e {
            PipelineError::Read(crate::source::ReadError::Cluster(e)) => e.into(),
            PipelineError::Archive(e) => e.into(),
            PipelineError::Interrupted => IndexFailure {
                reason: "interrupted".into(),
                run_level: true,
            },
            other => IndexFailure::of_index(other.to_string()),
        }
    }
}

/// Whether mappings turn `_source` off (`{"_source": {"enabled": false}}`,
/// or under a type name in Elasticsearch 6).
pub(super) fn source_disabled(mappings: &Value) -> bool {
    let off = |m: &Value| m.pointer("/_source/enabled") == Some(&Value::Bool(false));
    off(mappings)
        || mappings
            .as_object()
            .is_some_and(|types| types.values().any(off))
}
