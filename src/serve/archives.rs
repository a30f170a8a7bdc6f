//! The archive endpoints: what is under the config's `archives` location
//! (a folder or a bucket prefix), each archive's manifest summary, and
//! archives in and out as tar streams.
//!
//! | route | role | what |
//! |---|---|---|
//! | `GET /v1/archives` | viewer+ | every archive name, complete or not |
//! | `GET /v1/archives/{name}` | viewer+ | its manifest summary; 404, 409 while incomplete |
//! | `GET /v1/archives/{name}/download` | exporter, admin | a tar of it ([`super::tarball::tar_body`]); 409 while incomplete |
//! | `PUT /v1/archives/{name}` | restorer, admin | stores a tar after checking it ([`super::tarball::receive`]); 409 if the name is taken |
//!
//! An archive is complete when its `manifest.json` (the commit point of a
//! dump, written last) is there and valid; an unfinished dump has only its
//! checkpoint and chunks. Only complete archives are summarised or
//! downloaded, and a download serves exactly the files the manifest lists.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::{Action, Caller};
use super::error::ApiError;
use super::tarball::{self, UploadError};
use super::AppState;
use crate::archive::manifest::Manifest;
use crate::archive::reader::{self, Archive};
use crate::archive::store::{ArchiveStore, Location, ObjectLocation, StoreError};
use crate::archive::{ArchiveError, MANIFEST_FILE};

/// Longest archive name accepted.
pub const MAX_NAME: usize = 200;

/// The archive routes, merged into [`super::router`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/archives", get(list))
        .route("/v1/archives/{name}", get(summary).put(upload))
        .route("/v1/archives/{name}/download", get(download))
}

/// Checks an archive name: `[A-Za-z0-9._-]`, not starting with `.` (the
/// hidden names a dump uses while replacing an archive), at most
/// [`MAX_NAME`] characters. The name becomes one folder or prefix
/// component, so nothing else may reach the store.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid archive name {name:?}: use 1 to {MAX_NAME} of A-Z a-z 0-9 . _ -, not starting with ."
        )))
    }
}

/// Names being uploaded right now: a second upload of the same name is
/// refused at once (a local folder has no conditional create for every
/// file, only for the manifest). A name leaves the set when its upload
/// task ends, even if the client is gone.
#[derive(Debug, Default)]
pub struct Uploads(Mutex<HashSet<String>>);

/// One name held by [`Uploads::reserve`]; dropping it frees the name.
pub struct Reservation {
    uploads: Arc<Uploads>,
    name: String,
}

impl Uploads {
    /// Holds `name`, or `None` if an upload of it is under way.
    pub fn reserve(self: &Arc<Self>, name: &str) -> Option<Reservation> {
        let mut names = self.0.lock().unwrap_or_else(|p| p.into_inner());
        names.insert(name.to_string()).then(|| Reservation {
            uploads: self.clone(),
            name: name.to_string(),
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut names = self.uploads.0.lock().unwrap_or_else(|p| p.into_inner());
        names.remove(&self.name);
    }
}

/// The location of archive `name` under `base`.
pub fn archive_location(base: &Location, name: &str) -> Location {
    match base {
        Location::Local(path) => Location::Local(path.join(name)),
        Location::Object(object) => Location::Object(ObjectLocation {
            prefix: if object.prefix.is_empty() {
                name.to_string()
            } else {
                format!("{}/{name}", object.prefix)
            },
            ..object.clone()
        }),
    }
}

/// A store error as an answer: the cause, without the server's paths.
fn store_error(error: StoreError) -> ApiError {
    ApiError::internal(format!("archive store: {}", error.into_io()))
}

async fn open(location: &Location) -> Result<Arc<dyn ArchiveStore>, ApiError> {
    location.open().await.map_err(store_error)
}

/// Whether anything is stored under archive `name` of `archives`: an
/// archive, a partial dump or its lock, or an object named `name` itself.
/// Uploads and export jobs are refused such a name (409).
pub async fn taken(archives: &Location, name: &str) -> Result<bool, ApiError> {
    let base = open(archives).await?;
    Ok(!base
        .list(&format!("{name}/"))
        .await
        .map_err(store_error)?
        .is_empty()
        || base.exists(name).await.map_err(store_error)?)
}

/// Files and bytes an archive's manifest lists (the data as stored,
/// `manifest.json` aside).
fn listed_bytes(manifest: &Manifest) -> u64 {
    manifest.files().map(|f| f.bytes).sum()
}

/// Why an archive that has objects is not served.
fn not_valid(name: &str, error: &ArchiveError) -> ApiError {
    match error {
        ArchiveError::MissingManifest(_) => ApiError::conflict(format!(
            "archive {name:?} is incomplete: no manifest.json (a dump still running, or one that stopped; a dump writes its manifest last)"
        )),
        ArchiveError::BadManifest { reason, .. } => ApiError::conflict(format!(
            "archive {name:?} has an invalid manifest.json: {reason}"
        )),
        other => ApiError::conflict(format!("archive {name:?} cannot be read: {other}")),
    }
}

/// Opens archive `name`: its store and the checked manifest. 404 when
/// nothing is under the name, 409 when it is incomplete or invalid.
async fn open_archive(
    state: &AppState,
    name: &str,
) -> Result<(Arc<dyn ArchiveStore>, Archive), ApiError> {
    check_name(name)?;
    let store = open(&archive_location(&state.config.archives, name)).await?;
    match reader::open_store(store.clone()).await {
        Ok(archive) => Ok((store, archive)),
        Err(error) => {
            let objects = store.list("").await.map_err(store_error)?;
            if objects.is_empty() {
                Err(ApiError::not_found(format!("no archive named {name:?}")))
            } else {
                Err(not_valid(name, &error))
            }
        }
    }
}

/// `GET /v1/archives`.
async fn list(caller: Caller, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    caller.check(Action::ReadArchives, &[])?;
    let base = open(&state.config.archives).await?;
    let objects = base.list("").await.map_err(store_error)?;
    // Archive name -> whether a manifest.json is among its objects. Keys
    // without a folder (files at the top) and names that could not be an
    // archive's (`.NAME.esark-new` while a dump replaces NAME) are skipped.
    let mut names: BTreeMap<String, bool> = BTreeMap::new();
    for object in &objects {
        let Some((name, rest)) = object.key.split_once('/') else {
            continue;
        };
        if check_name(name).is_err() {
            continue;
        }
        *names.entry(name.to_string()).or_default() |= rest == MANIFEST_FILE;
    }
    let mut archives = Vec::with_capacity(names.len());
    for (name, has_manifest) in names {
        let mut entry = json!({
            "name": name, "complete": false, "created_at": null, "docs": null, "bytes": null,
        });
        if has_manifest {
            let store = open(&archive_location(&state.config.archives, &name)).await?;
            if let Ok(archive) = reader::open_store(store).await {
                let manifest = archive.manifest();
                entry["complete"] = json!(true);
                entry["created_at"] = json!(manifest.created_at);
                entry["docs"] = json!(manifest.total_docs());
                entry["bytes"] = json!(listed_bytes(manifest));
            }
        }
        archives.push(entry);
    }
    Ok(Json(json!({ "archives": archives })))
}

/// The summary of a complete archive.
fn summary_of(name: &str, archive: &Archive) -> Value {
    let manifest = archive.manifest();
    let indices: Vec<Value> = manifest
        .indices
        .iter()
        .map(|index| {
            json!({
                "name": index.name,
                "docs": index.docs,
                "bytes": index.files.iter().map(|f| f.bytes).sum::<u64>(),
                "data_stream": index.data_stream,
            })
        })
        .collect();
    json!({
        "name": name,
        "complete": true,
        "format_version": u32::from(archive.version()),
        "tool_version": manifest.tool_version,
        "created_at": manifest.created_at,
        "completed_at": manifest.completed_at,
        "source": manifest.source,
        "indices": indices,
        "failed": manifest.failed,
        "docs": manifest.total_docs(),
        "bytes": listed_bytes(manifest),
        "files": manifest.files().count(),
        "encrypted": manifest.is_encrypted(),
    })
}

/// `GET /v1/archives/{name}`.
async fn summary(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.check(Action::ReadArchives, &[])?;
    let (_, archive) = open_archive(&state, &name).await?;
    Ok(Json(summary_of(&name, &archive)))
}

/// `GET /v1/archives/{name}/download`: the manifest's files and the
/// manifest itself (last), under `NAME/`, streamed from the store.
async fn download(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.check(Action::DownloadArchive, &[])?;
    let (store, archive) = open_archive(&state, &name).await?;
    // The manifest's own bytes, not a re-serialization: its checksums are
    // what the receiver checks the files against.
    let manifest_bytes = store.get(MANIFEST_FILE).await.map_err(store_error)?;
    let body = tarball::tar_body(
        name.clone(),
        store,
        archive.manifest().clone(),
        manifest_bytes,
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.tar\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// `PUT /v1/archives/{name}`: a tar of an archive, checked and stored.
async fn upload(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.check(Action::UploadArchive, &[])?;
    check_name(&name)?;
    let max = state.config.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    let reservation = state
        .uploads
        .reserve(&name)
        .ok_or_else(|| ApiError::conflict(format!("archive {name:?} is being uploaded")))?;
    if taken(&state.config.archives, &name).await? {
        return Err(ApiError::conflict(format!(
            "archive {name:?} exists; upload under another name"
        )));
    }
    let store = open(&archive_location(&state.config.archives, &name)).await?;
    // The upload runs as a task of its own: if the client goes away, the
    // handler is dropped, but the task still sees the body end and removes
    // what it wrote.
    let task = tokio::spawn(async move {
        let _reservation = reservation;
        tarball::receive(store.clone(), body.into_data_stream(), max).await?;
        reader::open_store(store)
            .await
            .map_err(|e| UploadError::Stored(e.to_string()))
    });
    let archive = match task.await {
        Ok(Ok(archive)) => archive,
        Ok(Err(UploadError::TooLarge)) => return Err(too_large(max)),
        Ok(Err(UploadError::Exists)) => {
            return Err(ApiError::conflict(format!(
                "archive {name:?} was created while uploading"
            )))
        }
        Ok(Err(UploadError::Store(e))) => return Err(store_error(e)),
        Ok(Err(UploadError::Stored(e))) => return Err(ApiError::internal(e)),
        Ok(Err(e)) => return Err(ApiError::bad_request(e.to_string())),
        Err(e) => return Err(ApiError::internal(format!("upload task: {e}"))),
    };
    tracing::info!(archive = %name, by = %caller.name, "archive uploaded");
    Ok((StatusCode::CREATED, Json(summary_of(&name, &archive))))
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the upload is larger than max_upload_bytes ({max} bytes in the service's config)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn names() {
        for good in ["b1", "nightly-2024.06.01", "A_b.c-d", &"x".repeat(MAX_NAME)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "a b",
            "a\\b",
            "é",
            "a:b",
            &"x".repeat(MAX_NAME + 1),
        ] {
            let error = check_name(bad).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn an_archive_is_one_component_below_the_base() {
        let local = Location::Local(PathBuf::from("/srv/a"));
        assert_eq!(
            archive_location(&local, "b1"),
            Location::Local(PathBuf::from("/srv/a/b1"))
        );
        let s3 = |p: &str| Location::parse(p.as_ref()).unwrap();
        assert_eq!(archive_location(&s3("s3://bk"), "b1"), s3("s3://bk/b1"));
        assert_eq!(
            archive_location(&s3("s3://bk/x/y"), "b1"),
            s3("s3://bk/x/y/b1")
        );
    }

    #[test]
    fn a_name_is_reserved_once_until_dropped() {
        let uploads = Arc::new(Uploads::default());
        let held = uploads.reserve("b1").unwrap();
        assert!(uploads.reserve("b1").is_none());
        assert!(uploads.reserve("b2").is_some());
        drop(held);
        assert!(uploads.reserve("b1").is_some());
    }
}
