//! The inspect command: show what an archive holds and prove every file is
//! intact (size and sha256 against the manifest).

use std::path::Path;

use crate::archive::crypt::Identities;
use crate::archive::manifest::Manifest;
use crate::archive::reader::{self, Archive, FileCheck};
use crate::archive::store::Location;
use crate::archive::ArchiveError;

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

/// Opens the archive and checks every file the manifest lists (the
/// stored bytes: no key needed); with `identities`, also that they open
/// an encrypted archive.
pub async fn run(
    root: &Path,
    identities: Option<Identities>,
) -> Result<InspectReport, ArchiveError> {
    run_at(&Location::from(root), identities).await
}

/// [`run`] for an archive anywhere: a folder, or a prefix of a bucket.
pub async fn run_at(
    location: &Location,
    identities: Option<Identities>,
) -> Result<InspectReport, ArchiveError> {
    let archive = match location {
        Location::Local(root) => reader::open(root).await?,
        Location::Object(_) => reader::open_store(location.open().await?).await?,
    };
    let given = identities.is_some();
    let archive = archive.with_identities(identities);
    if given {
        archive.reader().check_identity().await?;
    }
    let (checked, problems) = check_all(&archive).await;
    Ok(InspectReport {
        manifest: archive.manifest().clone(),
        checked,
        problems,
    })
}

/// Checks every file; returns how many were checked and the failures.
pub async fn check_all(archive: &Archive) -> (usize, Vec<(String, FileCheck)>) {
    let checked = archive.manifest().files().count();
    (
        checked,
        archive.check_files(archive.manifest().files()).await,
    )
}
