//! The target side of one index: deciding what an existing index means
//! under `--mode`, creating the index set up for a fast load, putting its
//! settings back, and attaching or atomically moving aliases.

use serde_json::{json, Map, Value};

use super::report::AliasChange;
use crate::archive::metadata::{convert_field_type, unknown_field_type};
use crate::catalog::IndexMetadata;
use crate::cluster::indices::{ClusterNames, NameKind};
use crate::cluster::{Cluster, ClusterError};

/// What to do when a target index already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Touch nothing of that index and report it as failed.
    Fail,
    /// Delete and recreate it.
    Replace,
    /// Keep it and its documents; write the archive's over the same ids.
    Merge,
    /// Leave it alone and report it as skipped.
    SkipExisting,
}

/// Settings changed for the load, and the values to put back after it.
pub const LOAD_SETTINGS: &[(&str, &str)] =
    &[("refresh_interval", "-1"), ("number_of_replicas", "0")];

/// How an index will be loaded.
#[derive(Debug, Clone, PartialEq)]
pub enum Preparation {
    /// Load into `concrete`. `restore_settings` is set when esark created
    /// the index and must put the load settings back afterwards.
    Load {
        concrete: String,
        created: bool,
        restore_settings: Option<Value>,
        /// Settings the target refused and that were left out.
        dropped_settings: Vec<String>,
        /// Fields whose type the target names differently, converted
        /// (`field x: flattened -> flat_object`).
        converted_fields: Vec<String>,
        /// The index deleted to be created again (`--mode replace`), with
        /// the aliases it was in: its memberships went with it.
        removed: Option<(String, Vec<String>)>,
    },
    Skip(String),
    Fail(String),
}

/// How an index esark creates is set up for its load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// With [`LOAD_SETTINGS`], put back after the load.
    Tuned,
    /// With its archived settings from the start: for an index that one
    /// bulk request holds ([`fits_one_bulk`]), where no refresh or replica
    /// write is saved and putting the settings back would cost a
    /// cluster-state update (`PUT _settings`) per index.
    AsArchived,
}

/// Whether an index of `docs` documents in `stored` bytes of chunks (as
/// stored: compressed; `None` when unknown) is sent in one bulk request
/// of at most `bulk_docs` documents and `bulk_bytes` bytes. The stored
/// size bounds nothing when compressed; it is what the archive knows, and
/// the load settings save nothing on a load of a few requests either.
pub fn fits_one_bulk(docs: u64, stored: Option<u64>, bulk_docs: usize, bulk_bytes: usize) -> bool {
    docs <= bulk_docs as u64 && stored.is_some_and(|b| b <= bulk_bytes as u64)
}

/// Decides and creates. `atomic` creates a fresh concrete index whatever
/// exists; the switch happens in [`attach_aliases`].
///
/// `names` lists the target's names as the run found them: a name it does
/// not hold is created without asking again (one request per index
/// saved). Created since by someone else, the name makes the creation fail
/// (the index or an alias exists): then everything is decided again on a
/// fresh look. Not with `atomic`, whose creation of a fresh copy would not
/// notice.
#[allow(clippy::too_many_arguments)]
pub async fn prepare(
    target: &Cluster,
    name: &str,
    meta: &IndexMetadata,
    mode: Mode,
    atomic: bool,
    with_mappings: bool,
    setup: Setup,
    names: Option<&ClusterNames>,
) -> Result<Preparation, ClusterError> {
    if names.is_some_and(|n| !n.contains(name)) && !atomic {
        match create(target, name, meta, false, with_mappings, setup, None).await {
            Err(e) if is_taken(&e) => {
                tracing::info!("{name}: {e}; created since the run looked: decided again");
            }
            other => return other,
        }
    }
    let kind = target.name_kind(name).await?;
    let mut removed = None;
    if kind != NameKind::Missing {
        let what = match &kind {
            NameKind::Alias(on) => format!("an alias of that name exists (on {})", on.join(", ")),
            _ => "the index exists".to_string(),
        };
        match mode {
            Mode::SkipExisting => return Ok(Preparation::Skip(what)),
            Mode::Fail => {
                return Ok(Preparation::Fail(format!(
                    "{what}; nothing written (choose --mode replace, merge or skip-existing)"
                )))
            }
            Mode::Merge => {
                return Ok(Preparation::Load {
                    concrete: name.to_string(),
                    created: false,
                    restore_settings: None,
                    dropped_settings: Vec::new(),
                    converted_fields: Vec::new(),
                    removed: None,
                })
            }
            Mode::Replace if atomic => {}
            Mode::Replace => match kind {
                NameKind::Index => {
                    let aliases = target.index_aliases(name).await?;
                    let aliases = aliases
                        .as_object()
                        .map(|m| m.keys().cloned().collect())
                        .unwrap_or_default();
                    target.delete_index(name).await?;
                    removed = Some((name.to_string(), aliases));
                }
                _ => {
                    return Ok(Preparation::Fail(format!(
                        "{what}; use --atomic to switch the alias to a fresh index"
                    )))
                }
            },
        }
    }
    create(target, name, meta, atomic, with_mappings, setup, removed).await
}

/// Whether a creation failed because the name is taken (by an index, an
/// alias or a data stream).
fn is_taken(error: &ClusterError) -> bool {
    error.is_type("resource_already_exists_exception")
        || error.is_type("invalid_index_name_exception")
        || error.is_type("invalid_alias_name_exception")
}

/// Creates the index for `name` (a fresh `{name}-esark-<ts>` copy with
/// `atomic`), set up as `setup` says.
async fn create(
    target: &Cluster,
    name: &str,
    meta: &IndexMetadata,
    atomic: bool,
    with_mappings: bool,
    setup: Setup,
    removed: Option<(String, Vec<String>)>,
) -> Result<Preparation, ClusterError> {
    let concrete = if atomic {
        format!(
            "{name}-esark-{}",
            chrono::Utc::now().format("%Y%m%d%H%M%S%3f")
        )
    } else {
        name.to_string()
    };
    let (mut body, restore) = match creation_body(meta, with_mappings) {
        Ok((body, restore)) if setup == Setup::Tuned => (body, Some(restore)),
        Ok(_) => match archived_body(meta, with_mappings) {
            Ok(body) => (body, None),
            Err(why) => return Ok(Preparation::Fail(why.to_string())),
        },
        Err(why) => return Ok(Preparation::Fail(why.to_string())),
    };
    // A target of another version or flavor may refuse settings this one
    // does not know (OpenSearch's `index.replication.type` on
    // Elasticsearch, say): each is dropped, named in the report, and the
    // creation tried again.
    //
    // A field type the target does not know is converted when the other
    // flavor names it differently (Elasticsearch's `flattened` is
    // OpenSearch's `flat_object`, `dense_vector` is `knn_vector`), each
    // field named in the report; any other unknown type fails the index
    // with the server's reason.
    let mut dropped = Vec::new();
    let mut converted = Vec::new();
    let mut conversions = 0;
    loop {
        let error = match target.create_index(&concrete, &body).await {
            Ok(()) => break,
            Err(e) => e,
        };
        if let Some(setting) = refused_setting(&error) {
            if dropped.len() < MAX_DROPPED && remove_setting(&mut body, &setting) {
                dropped.push(setting);
                continue;
            }
        }
        if let Some(kind) = unknown_field_type_of(&error) {
            let notes = match body.get_mut("mappings") {
                Some(mappings) if conversions < MAX_CONVERSIONS => {
                    convert_field_type(mappings, &kind)
                }
                _ => Vec::new(),
            };
            if notes.is_empty() {
                return Ok(Preparation::Fail(format!(
                    "the target has no field type [{kind}] and esark knows no counterpart: {error}"
                )));
            }
            conversions += 1;
            converted.extend(notes);
            continue;
        }
        return Err(error);
    }
    Ok(Preparation::Load {
        concrete,
        created: true,
        restore_settings: restore,
        dropped_settings: dropped,
        converted_fields: converted,
        removed,
    })
}

/// Decides and creates for a data stream: under `--mode replace` an
/// existing one is deleted (with its backing indices) and created again;
/// the creation needs the stream's index template, restored before it.
/// `--atomic` does not apply: a data stream has no alias to switch.
pub async fn prepare_data_stream(
    target: &Cluster,
    name: &str,
    mode: Mode,
    atomic: bool,
) -> Result<Preparation, ClusterError> {
    if atomic {
        return Ok(Preparation::Fail(
            "a data stream cannot be restored with --atomic (it has no alias to switch); nothing written".into(),
        ));
    }
    let load = |created| Preparation::Load {
        concrete: name.to_string(),
        created,
        restore_settings: None,
        dropped_settings: Vec::new(),
        converted_fields: Vec::new(),
        removed: None,
    };
    if target.data_stream_exists(name).await? {
        let what = "the data stream exists";
        match mode {
            Mode::SkipExisting => return Ok(Preparation::Skip(what.into())),
            Mode::Fail => {
                return Ok(Preparation::Fail(format!(
                    "{what}; nothing written (choose --mode replace, merge or skip-existing)"
                )))
            }
            Mode::Merge => return Ok(load(false)),
            Mode::Replace => target.delete_data_stream(name).await?,
        }
    } else if target.name_kind(name).await? != NameKind::Missing {
        let what = "an index or alias of that name exists";
        return Ok(match mode {
            Mode::SkipExisting => Preparation::Skip(what.into()),
            _ => Preparation::Fail(format!(
                "{what}, not a data stream; nothing written (delete it, or restore with --rename)"
            )),
        });
    }
    target.create_data_stream(name).await?;
    Ok(load(true))
}

/// Settings dropped at most per index before giving up.
const MAX_DROPPED: usize = 16;

/// Field types converted at most per index before giving up.
const MAX_CONVERSIONS: usize = 8;

/// The field type a creation error says the target does not know.
fn unknown_field_type_of(error: &ClusterError) -> Option<String> {
    match error {
        ClusterError::Http {
            status: 400,
            reason,
            ..
        } => unknown_field_type(reason),
        _ => None,
    }
}

/// The setting a creation error says the target does not know.
pub fn refused_setting(error: &ClusterError) -> Option<String> {
    let ClusterError::Http {
        status: 400,
        reason,
        types,
        ..
    } = error
    else {
        return None;
    };
    if !types.is("illegal_argument_exception") && !types.is("settings_exception") {
        return None;
    }
    // Only the reason names the setting.
    let start = reason.find("unknown setting [")? + "unknown setting [".len();
    let end = reason[start..].find(']')? + start;
    Some(reason[start..end].to_string())
}

/// Removes a dotted setting (`index.replication.type`) from a creation
/// body, nested or flat; whether it was there.
fn remove_setting(body: &mut Value, setting: &str) -> bool {
    let Some(settings) = body.get_mut("settings").and_then(Value::as_object_mut) else {
        return false;
    };
    if settings.remove(setting).is_some() {
        return true;
    }
    let parts: Vec<&str> = setting.split('.').collect();
    fn remove(map: &mut Map<String, Value>, parts: &[&str]) -> bool {
        match parts {
            [] => false,
            [last] => map.remove(*last).is_some(),
            [head, rest @ ..] => match map.get_mut(*head) {
                Some(Value::Object(child)) => {
                    // Flat keys below a prefix: {"index": {"replication.type": …}}.
                    let joined = rest.join(".");
                    let found = child.remove(&joined).is_some() || remove(child, rest);
                    if child.is_empty() {
                        map.remove(*head);
                    }
                    found
                }
                _ => false,
            },
        }
    }
    remove(settings, &parts)
}

/// The `PUT /{index}` body of [`Setup::AsArchived`]: archived settings and
/// mappings unless `--no-mappings`, nothing changed for the load.
pub fn archived_body(
    meta: &IndexMetadata,
    with_mappings: bool,
) -> Result<Value, crate::archive::metadata::MappingError> {
    let settings = if meta.settings.is_object() {
        meta.settings.clone()
    } else {
        json!({})
    };
    let mut body = json!({ "settings": settings });
    add_mappings(&mut body, meta, with_mappings)?;
    Ok(body)
}

fn add_mappings(
    body: &mut Value,
    meta: &IndexMetadata,
    with_mappings: bool,
) -> Result<(), crate::archive::metadata::MappingError> {
    if with_mappings {
        let empty = meta.mappings.as_object().is_none_or(|m| m.is_empty());
        if !empty {
            // An archive of Elasticsearch 6 has a mapping type; 7+ has none.
            body["mappings"] = crate::archive::metadata::typeless(meta.mappings.clone())?;
        }
    }
    Ok(())
}

/// The `PUT /{index}` body of [`Setup::Tuned`]: archived settings with the
/// load settings applied, and mappings unless `--no-mappings`. Also returns
/// the settings to put back after the load (the archived values, or `null`
/// = default).
pub fn creation_body(
    meta: &IndexMetadata,
    with_mappings: bool,
) -> Result<(Value, Value), crate::archive::metadata::MappingError> {
    let mut settings = meta.settings.clone();
    if !settings.is_object() {
        settings = json!({});
    }
    let index = settings
        .as_object_mut()
        .expect("object")
        .entry("index")
        .or_insert_with(|| json!({}));
    if !index.is_object() {
        *index = json!({});
    }
    let index = index.as_object_mut().expect("object");
    let mut restore = Map::new();
    for (key, load_value) in LOAD_SETTINGS {
        let archived = index.get(*key).cloned().unwrap_or(Value::Null);
        restore.insert(key.to_string(), archived);
        index.insert(key.to_string(), Value::String(load_value.to_string()));
    }
    let mut body = json!({ "settings": settings });
    add_mappings(&mut body, meta, with_mappings)?;
    Ok((body, json!({ "index": restore })))
}

/// What [`attach_aliases`] changed, for the report.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AliasOutcome {
    pub changes: Vec<AliasChange>,
    /// Indices deleted: what the name pointed to, replaced by `concrete`.
    pub removed: Vec<String>,
    /// Aliases that had other members and that `concrete` joined.
    pub joined: Vec<String>,
}

/// Whether `index` is a copy esark loaded for `name` with `--atomic`
/// (`{name}-esark-<timestamp>`).
pub fn is_atomic_copy(name: &str, index: &str) -> bool {
    index
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix("-esark-"))
        .is_some_and(|ts| !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()))
}

/// Attaches `aliases` (the archived ones, or none under `--no-aliases`) to
/// `concrete`, in one `_aliases` call; `siblings` are the target names of
/// the run's indices (an alias they are in is not one the index joined). Only the restored index's own
/// memberships change: other members of an alias are never removed.
///
/// With `atomic` (reached only when `name` is free or `--mode replace`),
/// in the same call: what `name` pointed to (the old concrete index, or an
/// earlier `{name}-esark-<ts>` copy) is deleted with its memberships, and
/// an alias `name` points to `concrete`, so that readers of the name and of
/// every alias switch at once and the name stays reachable.
pub async fn attach_aliases(
    target: &Cluster,
    name: &str,
    concrete: &str,
    aliases: &Value,
    atomic: bool,
    siblings: &[String],
) -> Result<AliasOutcome, ClusterError> {
    let wanted: Vec<(String, Value)> = aliases
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut out = AliasOutcome::default();
    let mut actions = Vec::new();
    let change = |action: &str, alias: &str, index: &str| AliasChange {
        action: action.to_string(),
        alias: alias.to_string(),
        index: index.to_string(),
    };
    let mut olds: Vec<String> = Vec::new();
    if atomic {
        match target.name_kind(name).await? {
            NameKind::Missing => {}
            NameKind::Index => olds.push(name.to_string()),
            NameKind::Alias(holders) => {
                for holder in holders.into_iter().filter(|h| h != concrete) {
                    if is_atomic_copy(name, &holder) {
                        olds.push(holder);
                    } else {
                        // The name must reach the new copy alone; the
                        // index it also pointed to is not ours to delete.
                        actions.push(json!({ "remove": { "index": holder, "alias": name } }));
                        out.changes.push(change("remove", name, &holder));
                    }
                }
            }
        }
        for old in &olds {
            if let Some(memberships) = target.index_aliases(old).await?.as_object() {
                for alias in memberships.keys() {
                    out.changes.push(change("remove", alias, old));
                }
            }
            actions.push(json!({ "remove_index": { "index": old } }));
            out.removed.push(old.clone());
        }
    }
    for (alias, body) in &wanted {
        if let NameKind::Alias(holders) = target.name_kind(alias).await? {
            // Members restored by this same run (or their --atomic
            // copies) are not the target's own.
            let sibling = |h: &str| siblings.iter().any(|s| s == h || is_atomic_copy(s, h));
            if holders
                .iter()
                .any(|h| h != concrete && !olds.contains(h) && !sibling(h))
            {
                out.joined.push(alias.clone());
            }
        }
        let mut add = match body {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        add.insert("index".into(), Value::String(concrete.to_string()));
        add.insert("alias".into(), Value::String(alias.clone()));
        actions.push(json!({ "add": add }));
        out.changes.push(change("add", alias, concrete));
    }
    if atomic && !wanted.iter().any(|(alias, _)| alias == name) {
        actions.push(json!({ "add": { "index": concrete, "alias": name } }));
        out.changes.push(change("add", name, concrete));
    }
    if !actions.is_empty() {
        target.update_aliases(&actions).await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_settings_are_named_and_removed() {
        let e = ClusterError::from_answer(
            "PUT",
            "/i",
            400,
            r#"{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"unknown setting [index.replication.type] please check that any required plugins are installed, or check the breaking changes documentation for removed settings"}],"type":"illegal_argument_exception","reason":"unknown setting [index.replication.type] please check that any required plugins are installed, or check the breaking changes documentation for removed settings"},"status":400}"#,
        );
        assert_eq!(
            refused_setting(&e).as_deref(),
            Some("index.replication.type")
        );
        let mut body = json!({"settings": {"index": {"replication": {"type": "DOCUMENT"}, "number_of_shards": "1"}}});
        assert!(remove_setting(&mut body, "index.replication.type"));
        assert_eq!(
            body,
            json!({"settings": {"index": {"number_of_shards": "1"}}})
        );
        let mut flat =
            json!({"settings": {"index.knn": true, "index": {"codec": "best_compression"}}});
        assert!(remove_setting(&mut flat, "index.knn"));
        assert!(remove_setting(&mut flat, "index.codec"));
        assert!(!remove_setting(&mut flat, "index.nothing"));
    }

    #[test]
    fn elasticsearch_6_mapping_types_are_removed() {
        let meta = IndexMetadata {
            settings: json!({"index": {}}),
            mappings: json!({"_doc": {"properties": {"a": {"type": "keyword"}}}}),
            aliases: json!({}),
        };
        let (body, _) = creation_body(&meta, true).unwrap();
        assert_eq!(
            body["mappings"],
            json!({"properties": {"a": {"type": "keyword"}}})
        );
    }

    #[test]
    fn creation_body_sets_load_settings_and_remembers_archived_ones() {
        let meta = IndexMetadata {
            settings: json!({"index": {"number_of_shards": "2", "number_of_replicas": "1",
                "analysis": {"analyzer": {"a": {"type": "custom", "tokenizer": "standard"}}}}}),
            mappings: json!({"properties": {"n": {"type": "long"}}}),
            aliases: json!({}),
        };
        let (body, restore) = creation_body(&meta, true).unwrap();
        assert_eq!(
            body,
            json!({"settings": {"index": {"number_of_shards": "2", "number_of_replicas": "0", "refresh_interval": "-1",
                "analysis": {"analyzer": {"a": {"type": "custom", "tokenizer": "standard"}}}}},
                "mappings": {"properties": {"n": {"type": "long"}}}})
        );
        assert_eq!(
            restore,
            json!({"index": {"refresh_interval": null, "number_of_replicas": "1"}})
        );
        let (no_mappings, _) = creation_body(&meta, false).unwrap();
        assert!(no_mappings.get("mappings").is_none());
        // A small index: as archived.
        assert_eq!(
            archived_body(&meta, true).unwrap(),
            json!({"settings": meta.settings, "mappings": meta.mappings})
        );
        assert!(archived_body(&meta, false)
            .unwrap()
            .get("mappings")
            .is_none());
    }

    #[test]
    fn only_an_index_of_one_bulk_request_skips_the_load_settings() {
        assert!(fits_one_bulk(100, Some(40_000), 1000, 5 << 20));
        assert!(fits_one_bulk(1000, Some(5 << 20), 1000, 5 << 20));
        assert!(!fits_one_bulk(1001, Some(40_000), 1000, 5 << 20));
        assert!(!fits_one_bulk(100, Some((5 << 20) + 1), 1000, 5 << 20));
        // Size unknown (a copy from a cluster, another tool's dump).
        assert!(!fits_one_bulk(10, None, 1000, 5 << 20));
    }
}
