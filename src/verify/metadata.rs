//! Comparing the metadata of an index (settings, mappings, aliases) and
//! the templates with what the target holds. Differences are written into
//! the verdict as sentences; nothing here reads documents.

use serde_json::{Map, Value};

use super::IndexVerdict;
use crate::catalog::{IndexMetadata, TemplateSet};
use crate::cluster::templates::TemplateKind;
use crate::cluster::{Cluster, ClusterError};

/// Settings: every archived key must have the same value on the target.
/// Mappings: equal. Aliases: equal, ignoring an alias named like the index
/// (added by an atomic restore).
pub(super) fn compare_metadata(
    archived: &IndexMetadata,
    live: &IndexMetadata,
    target_name: &str,
    verdict: &mut IndexVerdict,
) {
    let mut archived_flat = Map::new();
    flatten("", &archived.settings, &mut archived_flat);
    let mut live_flat = Map::new();
    flatten("", &live.settings, &mut live_flat);
    let mut settings_ok = true;
    for (key, value) in &archived_flat {
        let other = live_flat.get(key);
        if other.map(scalar_text) != Some(scalar_text(value)) {
            settings_ok = false;
            verdict.differences.push(format!(
                "setting {key}: archive {}, target {}",
                scalar_text(value),
                other.map(scalar_text).unwrap_or_else(|| "absent".into())
            ));
        }
    }
    verdict.settings_match = settings_ok;
    // Field types converted for a target of the other flavor (see
    // `restore::target::prepare`) count as the same.
    verdict.mappings_match = crate::archive::metadata::same_after_conversion(
        &crate::archive::metadata::typeless(archived.mappings.clone())
            .unwrap_or_else(|_| archived.mappings.clone()),
        &live.mappings,
    );
    if !verdict.mappings_match {
        verdict.differences.push("mappings differ".into());
    }
    let mut live_aliases = live.aliases.clone();
    if let Some(map) = live_aliases.as_object_mut() {
        if archived.aliases.get(target_name).is_none() {
            map.remove(target_name);
        }
    }
    verdict.aliases_match = normalize_empty(&archived.aliases) == normalize_empty(&live_aliases);
    if !verdict.aliases_match {
        verdict.differences.push(format!(
            "aliases differ: archive {}, target {}",
            archived.aliases, live_aliases
        ));
    }
}

fn normalize_empty(v: &Value) -> Value {
    match v {
        Value::Null => Value::Object(Map::new()),
        other => other.clone(),
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Map<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// Settings come back as strings ("2") whatever was sent (2).
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) async fn compare_templates(
    archived: &TemplateSet,
    target: &Cluster,
) -> Result<Vec<String>, ClusterError> {
    let mut diffs = Vec::new();
    let live_legacy = target.legacy_templates().await?;
    diff_templates(
        TemplateKind::Legacy,
        &archived.legacy,
        &live_legacy,
        &mut diffs,
    );
    if let Some(index) = &archived.index {
        let live = target.index_templates().await?;
        diff_templates(TemplateKind::Index, index, &live, &mut diffs);
    }
    if let Some(component) = &archived.component {
        let live = target.component_templates().await?;
        diff_templates(TemplateKind::Component, component, &live, &mut diffs);
    }
    Ok(diffs)
}

fn diff_templates(
    kind: TemplateKind,
    archived: &Map<String, Value>,
    live: &Map<String, Value>,
    diffs: &mut Vec<String>,
) {
    for (name, body) in archived {
        match live.get(name) {
            None => diffs.push(format!(
                "{kind:?} template {name:?} is missing on the target"
            )),
            Some(other) if other != body => {
                diffs.push(format!("{kind:?} template {name:?} differs"))
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::verdict;
    use serde_json::json;

    #[test]
    fn settings_compare_archived_keys_as_text() {
        let archived = IndexMetadata {
            settings: json!({"index": {"number_of_shards": 2, "analysis": {"analyzer": {"a": {"type": "custom"}}}}}),
            mappings: json!({"properties": {}}),
            aliases: json!({"al": {}}),
        };
        let live = IndexMetadata {
            settings: json!({"index": {"number_of_shards": "2", "refresh_interval": "1s", "analysis": {"analyzer": {"a": {"type": "custom"}}}}}),
            mappings: json!({"properties": {}}),
            aliases: json!({"al": {}, "i": {}}),
        };
        let mut v = verdict();
        compare_metadata(&archived, &live, "i", &mut v);
        assert!(
            v.settings_match && v.mappings_match && v.aliases_match,
            "{:?}",
            v.differences
        );

        let changed = IndexMetadata {
            settings: json!({"index": {"number_of_shards": "3"}}),
            ..live
        };
        let mut v = verdict();
        compare_metadata(&archived, &changed, "i", &mut v);
        assert!(!v.settings_match);
        assert!(
            v.differences
                .iter()
                .any(|d| d == "setting index.number_of_shards: archive 2, target 3"),
            "{:?}",
            v.differences
        );
    }
}
