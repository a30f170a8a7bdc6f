//! The target side of one index: deciding what an existing index means
//! under `--mode`, creating the index set up for a fast load, putting its
//! settings back, and attaching or atomically moving aliases.

use serde_json::{json, Map, Value};

use crate::cluster::indices::NameKind;
use crate::cluster::{Cluster, ClusterError};
use crate::dump::IndexMetadata;

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
    },
    Skip(String),
    Fail(String),
}

/// Decides and creates. `atomic` creates a fresh concrete index whatever
/// exists; the switch happens in [`attach_aliases`].
pub async fn prepare(
    target: &Cluster,
    name: &str,
    meta: &IndexMetadata,
    mode: Mode,
    atomic: bool,
    with_mappings: bool,
) -> Result<Preparation, ClusterError> {
    let kind = target.name_kind(name).await?;
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
                })
            }
            Mode::Replace if atomic => {}
            Mode::Replace => match kind {
                NameKind::Index => target.delete_index(name).await?,
                _ => {
                    return Ok(Preparation::Fail(format!(
                        "{what}; use --atomic to switch the alias to a fresh index"
                    )))
                }
            },
        }
    }
    let concrete = if atomic {
        format!(
            "{name}-esark-{}",
            chrono::Utc::now().format("%Y%m%d%H%M%S%3f")
        )
    } else {
        name.to_string()
    };
    let (body, restore) = creation_body(meta, with_mappings);
    target.create_index(&concrete, &body).await?;
    Ok(Preparation::Load {
        concrete,
        created: true,
        restore_settings: Some(restore),
    })
}

/// The `PUT /{index}` body: archived settings with the load settings
/// applied, and mappings unless `--no-mappings`. Also returns the settings
/// to put back after the load (the archived values, or `null` = default).
pub fn creation_body(meta: &IndexMetadata, with_mappings: bool) -> (Value, Value) {
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
    if with_mappings {
        let empty = meta.mappings.as_object().is_none_or(|m| m.is_empty());
        if !empty {
            body["mappings"] = meta.mappings.clone();
        }
    }
    (body, json!({ "index": restore }))
}

/// Attaches the archived aliases to `concrete`. With `atomic`, in the same
/// `_aliases` call, each alias is removed from whatever holds it — or, when
/// the index had no alias, an alias named `name` takes the place of the
/// existing index or alias of that name — so readers switch at once.
pub async fn attach_aliases(
    target: &Cluster,
    name: &str,
    concrete: &str,
    aliases: &Value,
    atomic: bool,
) -> Result<(), ClusterError> {
    let mut wanted: Vec<(String, Value)> = aliases
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    if atomic && wanted.is_empty() {
        wanted.push((name.to_string(), json!({})));
    }
    let mut actions = Vec::new();
    for (alias, body) in &wanted {
        if atomic {
            match target.name_kind(alias).await? {
                NameKind::Missing => {}
                NameKind::Index => actions.push(json!({ "remove_index": { "index": alias } })),
                NameKind::Alias(holders) => {
                    for holder in holders.iter().filter(|h| h.as_str() != concrete) {
                        actions.push(json!({ "remove": { "index": holder, "alias": alias } }));
                    }
                }
            }
        }
        let mut add = match body {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        add.insert("index".into(), Value::String(concrete.to_string()));
        add.insert("alias".into(), Value::String(alias.clone()));
        actions.push(json!({ "add": add }));
    }
    if actions.is_empty() {
        return Ok(());
    }
    target.update_aliases(&actions).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_body_sets_load_settings_and_remembers_archived_ones() {
        let meta = IndexMetadata {
            settings: json!({"index": {"number_of_shards": "2", "number_of_replicas": "1",
                "analysis": {"analyzer": {"a": {"type": "custom", "tokenizer": "standard"}}}}}),
            mappings: json!({"properties": {"n": {"type": "long"}}}),
            aliases: json!({}),
        };
        let (body, restore) = creation_body(&meta, true);
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
        let (no_mappings, _) = creation_body(&meta, false);
        assert!(no_mappings.get("mappings").is_none());
    }
}
