//! `gen-archive`: writes an esark archive of any number of documents
//! without a cluster, for the memory-flatness row at 1,000,000 documents
//! (osmem holds ~30 KB per document: it cannot serve a million).
//!
//! It copies a small *template* archive, a real `esark dump` of an
//! `esark-seed` cluster: its cluster files, every index's settings,
//! mappings and aliases, its options (compression, level, page size,
//! file size) and each index's slice count; only the data is generated.
//! Each index gets the template's share of the documents, written as
//! `esark dump` writes them: lines `{"_id":…[,"_routing":…],"_source":…}`
//! of `esark::sample::document` (the documents `esark-seed` loads, ids
//! `%08d`, routing `eu` on every seventh), pushed a page at a time into
//! esark's own [`ChunkWriter`] (one frame per page, the dump's compression), the manifest
//! last through [`ArchiveWriter`]: `esark inspect` checks it like any dump.
//!
//! `compare gen-archive --template DIR --output DIR --docs N --seed S`
//! prints `{"docs":N,"bytes":N}`.

use std::path::{Path, PathBuf};

use esark::archive::manifest::{now_rfc3339, FileKind, IndexEntry, Manifest};
use esark::archive::writer::ArchiveWriter;
use esark::archive::MANIFEST_FILE;
use esark::sink::chunk::ChunkWriter;
use serde_json::Value;

pub fn main(args: &[String]) -> Result<(), String> {
    let value = |name: &str| -> Result<String, String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .ok_or_else(|| format!("gen-archive: {name} is required"))
    };
    let template = PathBuf::from(value("--template")?);
    let output = PathBuf::from(value("--output")?);
    let docs: u64 = value("--docs")?
        .parse()
        .map_err(|e| format!("--docs: {e}"))?;
    let seed: u64 = value("--seed")?
        .parse()
        .map_err(|e| format!("--seed: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let written = rt.block_on(generate(&template, &output, docs, seed))?;
    println!(
        "{{\"docs\":{written},\"bytes\":{}}}",
        crate::steps::dir_size(&output)
    );
    Ok(())
}

/// Shares of `total` in proportion to `weights`, the remainder to the last.
fn shares(weights: &[u64], total: u64) -> Vec<u64> {
    let sum: u64 = weights.iter().sum::<u64>().max(1);
    let mut out: Vec<u64> = weights
        .iter()
        .map(|w| (total as u128 * *w as u128 / sum as u128) as u64)
        .collect();
    let given: u64 = out.iter().sum();
    if let Some(last) = out.last_mut() {
        *last += total - given;
    }
    out
}

async fn generate(template: &Path, output: &Path, docs: u64, seed: u64) -> Result<u64, String> {
    let text = std::fs::read(template.join(MANIFEST_FILE))
        .map_err(|e| format!("{}: {e}", template.display()))?;
    let mut manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| format!("template manifest: {e}"))?;
    if manifest.is_encrypted() || manifest.indices.iter().any(|i| i.data_stream) {
        return Err("the template must be a plain archive without data streams".into());
    }
    manifest.created_at = now_rfc3339();
    let writer = ArchiveWriter::create(output, false)
        .await
        .map_err(|e| e.to_string())?;
    let copy = |rel: String, kind: FileKind| {
        let writer = writer.clone();
        let path = template.join(&rel);
        async move {
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let value: Value =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            if let Some((folder, _)) = rel.rsplit_once('/') {
                writer.create_dir(folder).await.map_err(|e| e.to_string())?;
            }
            writer
                .write_json(&rel, kind, &value)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let mut cluster_files = Vec::new();
    for f in &manifest.cluster_files {
        cluster_files.push(copy(f.path.clone(), f.kind).await?);
    }
    manifest.cluster_files = cluster_files;

    let options = manifest.options.clone();
    let page = options.page_size.max(1) as u64;
    let counts = shares(
        &manifest.indices.iter().map(|i| i.docs).collect::<Vec<_>>(),
        docs,
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut lines: Vec<u8> = Vec::with_capacity(page as usize * 1100);
    let mut indices: Vec<IndexEntry> = Vec::new();
    for (entry, count) in manifest.indices.iter().zip(counts) {
        let mut files = Vec::new();
        for f in entry.files.iter().filter(|f| f.kind != FileKind::Data) {
            files.push(copy(f.path.clone(), f.kind).await?);
        }
        writer
            .create_dir(&entry.folder)
            .await
            .map_err(|e| e.to_string())?;
        let slices = entry.slices.max(1);
        let per_slice = shares(&vec![1; slices as usize], count);
        let mut k = 0u64;
        for (slice, n) in per_slice.into_iter().enumerate() {
            let mut chunks = ChunkWriter::new(
                writer.clone(),
                &entry.folder,
                slice as u32,
                options.compression,
                options.level,
                options.file_size,
            );
            let end = k + n;
            while k < end {
                lines.clear();
                let page_end = end.min(k + page);
                for id in k..page_end {
                    lines.extend_from_slice(format!("{{\"_id\":\"{id:08}\"").as_bytes());
                    if id % 7 == 0 {
                        lines.extend_from_slice(b",\"_routing\":\"eu\"");
                    }
                    lines.extend_from_slice(b",\"_source\":");
                    lines.extend_from_slice(esark::sample::document(&mut rng, id).as_bytes());
                    lines.extend_from_slice(b"}\n");
                }
                chunks
                    .push(&lines, page_end - k)
                    .await
                    .map_err(|e| e.to_string())?;
                k = page_end;
            }
            files.extend(chunks.finish().await.map_err(|e| e.to_string())?);
        }
        indices.push(IndexEntry {
            docs: count,
            expected_docs: count,
            files,
            ..entry.clone()
        });
    }
    manifest.indices = indices;
    manifest.completed_at = now_rfc3339();
    writer
        .write_manifest(&manifest)
        .await
        .map_err(|e| e.to_string())?;
    Ok(manifest.total_docs())
}
