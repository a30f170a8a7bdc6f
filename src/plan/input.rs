//! A plan read from disk: an esark archive of any format version, or a
//! dump another tool wrote (detected), checked against the selection.

use std::path::Path;
use std::sync::Arc;

use super::{from_archive, from_foreign, DataOrigin, PlanError, Renamer, RestorePlan};
use crate::archive::crypt::Identities;
use crate::archive::reader;
use crate::archive::store::{ArchiveStore, Location};
use crate::catalog::IndexSelector;
use crate::source::foreign::{self, ForeignError};

/// Reads what `input` names: an esark archive (any format version, in a
/// folder or on object storage) or a dump another tool wrote (detected;
/// read from local files only). Also returns the detected kind.
/// `identities` read an encrypted archive (`--identity`). `opened` is the
/// store of an archive on object storage when the caller opened it (a
/// [`crate::archive::store::spool::SpoolStore`], so that reading the data
/// again, the load after the check, does not download it again); `None`
/// opens it here.
pub async fn from_location(
    input: &Location,
    index: Option<&str>,
    selector: &IndexSelector,
    renamer: &Renamer,
    force: bool,
    identities: Option<&Identities>,
    opened: Option<Arc<dyn ArchiveStore>>,
) -> Result<(RestorePlan, Option<foreign::ForeignKind>), PlanError> {
    let local = input.as_local();
    let kind = match local {
        Some(path) => foreign::detect(path).await,
        None => None,
    };
    if kind.is_none() {
        if let Some(path) = local {
            if !foreign::looks_like_archive(path).await {
                return Err(ForeignError::Unrecognized(path.to_path_buf()).into());
            }
        }
        if index.is_some() {
            return Err(PlanError::IndexOnArchive);
        }
    }
    // The input is checked whole before the target is even contacted.
    let (mut plan, names) = match (kind, local) {
        (Some(kind), Some(path)) => (
            from_foreign(path, kind, index, selector, renamer).await?,
            None,
        ),
        _ => {
            let archive = match local {
                Some(path) => reader::open(path).await?,
                None => {
                    let store = match opened {
                        Some(store) => store,
                        None => input
                            .open()
                            .await
                            .map_err(crate::archive::ArchiveError::from)?,
                    };
                    reader::open_store(store).await?
                }
            }
            .with_identities(identities.cloned());
            let m = archive.manifest();
            let names: Vec<String> = m
                .indices
                .iter()
                .map(|i| i.name.clone())
                .chain(m.failed.iter().map(|f| f.name.clone()))
                .collect();
            (
                from_archive(&archive, selector, renamer, force).await?,
                Some(names),
            )
        }
    };
    if plan.indices.is_empty() && plan.damaged.is_empty() {
        refuse_empty(selector, names.as_deref(), &input.to_path())?;
    }
    super::keep_selected_templates(&mut plan, selector);
    Ok((plan, kind))
}

/// A selection that picked nothing is an error naming what it was matched
/// against, except an unfiltered restore of an archive without indices
/// (templates and cluster metadata only).
fn refuse_empty(
    selector: &IndexSelector,
    names: Option<&[String]>,
    input: &Path,
) -> Result<(), PlanError> {
    let filtered = selector.include.is_some() || selector.exclude.is_some();
    if !filtered && names.is_some_and(|n| n.is_empty()) {
        return Ok(());
    }
    let what = match &selector.include {
        Some(re) => format!("--match '{}'", re.as_str()),
        None => "the selection".into(),
    };
    let among = match names {
        Some(names) => {
            let mut sorted = names.to_vec();
            sorted.sort();
            let shown = sorted
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            let more = if sorted.len() > 5 { ", …" } else { "" };
            format!(
                "none of the {} indices of {} ({shown}{more})",
                names.len(),
                input.display()
            )
        }
        None => format!("no index of {}", input.display()),
    };
    let exclude = selector
        .exclude
        .as_ref()
        .map(|e| format!(" once --exclude '{}' is applied", e.as_str()))
        .unwrap_or_default();
    Err(PlanError::NothingSelected(format!(
        "{what} selects {among}{exclude}"
    )))
}

/// Sets the longest line accepted from the plan's archive chunks and
/// foreign files.
pub fn limit_lines(plan: &mut RestorePlan, max_line: u64) {
    for index in &mut plan.indices {
        match &mut index.data {
            DataOrigin::Chunks(files) => files.iter_mut().for_each(|f| f.max_line = max_line),
            DataOrigin::Foreign(files) => files.iter_mut().for_each(|f| f.max_line = max_line),
            DataOrigin::Stdin(_) | DataOrigin::Cluster { .. } => {}
        }
    }
}
