//! The inspect command: show what an archive holds and prove every file is
//! intact (size and sha256 against the manifest).

use std::path::Path;

use futures::stream::{self, StreamExt};

use crate::archive::manifest::Manifest;
use crate::archive::reader::{self, Archive, FileCheck};
use crate::archive::ArchiveError;

/// Files checked at the same time: hashing is CPU-bound, reading is I/O.
const CHECK_CONCURRENCY: usize = 4;

/// The manifest and every file that failed its check.
#[derive(Debug)]
pub struct InspectReport {
    pub manifest: Manifest,
    pub checked: usize,
    pub problems: Vec<(String, FileCheck)>,
}

impl InspectReport {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Opens the archive and checks every file the manifest lists.
pub async fn run(root: &Path) -> Result<InspectReport, ArchiveError> {
    let archive = reader::open(root).await?;
    let (checked, problems) = check_all(&archive).await;
    Ok(InspectReport {
        manifest: archive.manifest().clone(),
        checked,
        problems,
    })
}

/// Checks every file; returns how many were checked and the failures.
pub async fn check_all(archive: &Archive) -> (usize, Vec<(String, FileCheck)>) {
    let reader = archive.reader();
    let files: Vec<_> = archive.manifest().files().cloned().collect();
    let checked = files.len();
    let mut problems: Vec<(String, FileCheck)> = stream::iter(files)
        .map(|f| async move {
            let check = reader.check_file(&f).await;
            (f.path, check)
        })
        .buffer_unordered(CHECK_CONCURRENCY)
        .filter(|(_, c)| std::future::ready(*c != FileCheck::Ok))
        .collect()
        .await;
    problems.sort_by(|a, b| a.0.cmp(&b.0));
    (checked, problems)
}
