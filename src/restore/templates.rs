//! Templates on the target: which of the archive's a restore puts back (a
//! selective restore only those its indices need), whether each was
//! created, replaced or kept, and which of the target's own templates of
//! higher priority will shape a restored index.
//!
//! Elasticsearch applies the one composable template of highest priority
//! whose `index_patterns` match a new index, and every matching legacy one
//! when no composable template matches
//! (<https://www.elastic.co/guide/en/elasticsearch/reference/current/index-templates.html>).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::report::{Status, TemplateReport};
use super::target::Mode;
use crate::catalog::TemplateSet;
use crate::cluster::templates::{PutOutcome, TemplateKind};
use crate::cluster::Cluster;

/// Whether an index pattern (`logs-*`, `*`) matches `name`: `*` is any
/// run of characters, everything else is literal.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    if !name.ends_with(last) {
        return false;
    }
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The `index_patterns` of a template body (a string or a list), or the
/// `template` field of a legacy template of Elasticsearch 5.
fn patterns(body: &Value) -> Vec<String> {
    match body.get("index_patterns").or_else(|| body.get("template")) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn matches_any(body: &Value, names: &[&str]) -> bool {
    patterns(body)
        .iter()
        .any(|p| names.iter().any(|n| glob_matches(p, n)))
}

fn priority(body: &Value) -> i64 {
    body.get("priority").and_then(Value::as_i64).unwrap_or(0)
}

/// Keeps only the templates that shape one of `names` (the target names of
/// the selected indices): the index and legacy templates whose patterns
/// match one, and the component templates those index templates compose.
pub fn keep_needed(set: &mut TemplateSet, names: &[&str]) {
    set.legacy.retain(|_, body| matches_any(body, names));
    let mut composed: BTreeSet<String> = BTreeSet::new();
    if let Some(index) = set.index.as_mut() {
        index.retain(|_, body| matches_any(body, names));
        for body in index.values() {
            for c in body
                .get("composed_of")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                composed.insert(c.to_string());
            }
        }
    }
    if let Some(component) = set.component.as_mut() {
        component.retain(|name, _| composed.contains(name));
    }
}

/// The target's composable templates that are not being put back and that
/// outrank, for one of `names`, every template of the archive matching it.
pub fn outranking(
    existing: &Map<String, Value>,
    archived: &Map<String, Value>,
    names: &[&str],
) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        let ours = archived
            .iter()
            .filter(|(_, b)| matches_any(b, &[name]))
            .max_by_key(|(_, b)| priority(b));
        for (theirs, body) in existing {
            if archived.contains_key(theirs) || !matches_any(body, &[name]) {
                continue;
            }
            let p = priority(body);
            match ours {
                Some((ours, b)) if p > priority(b) => out.push(format!(
                    "the target's index template {theirs:?} (priority {p}) matches {name:?} and outranks the archive's {ours:?} (priority {}): it shapes the restored index",
                    priority(b)
                )),
                None => out.push(format!(
                    "the target's index template {theirs:?} (priority {p}) matches {name:?}: it shapes the restored index"
                )),
                _ => {}
            }
        }
    }
    out
}

/// Puts back the templates of `set` (component, composable, legacy). An
/// existing template is replaced only when existing indices would be
/// (`--mode replace` or `merge`); otherwise it is kept. Each is reported as
/// created, replaced or kept. Also returns the warnings about the target's
/// own templates that outrank the archive's for one of `names`.
pub async fn restore(
    target: &Cluster,
    set: &TemplateSet,
    mode: Mode,
    names: &[&str],
) -> (Vec<TemplateReport>, Vec<String>) {
    let create = matches!(mode, Mode::Fail | Mode::SkipExisting);
    let empty = Map::new();
    // What the target has; a kind it does not offer (or cannot list) has
    // nothing, and its put says why.
    let existing = |r: Result<Map<String, Value>, _>| r.unwrap_or_default();
    let on_target = [
        existing(target.component_templates().await),
        existing(target.index_templates().await),
        existing(target.legacy_templates().await),
    ];
    let archived_index = set.index.as_ref().unwrap_or(&empty);
    let warnings = outranking(&on_target[1], archived_index, names);
    let kinds = [
        (
            TemplateKind::Component,
            set.component.as_ref().unwrap_or(&empty),
        ),
        (TemplateKind::Index, archived_index),
        (TemplateKind::Legacy, &set.legacy),
    ];
    let mut out = Vec::new();
    for ((kind, templates), present) in kinds.into_iter().zip(&on_target) {
        for (name, body) in templates {
            let existed = present.contains_key(name);
            let (status, reason) = match target.put_template(kind, name, body, create).await {
                Ok(PutOutcome::Written) if existed => (Status::Restored, "replaced".to_string()),
                Ok(PutOutcome::Written) => (Status::Restored, "created".to_string()),
                Ok(PutOutcome::Exists) => (Status::Skipped, "exists on the target; kept".into()),
                Err(e) => (Status::Failed, e.to_string()),
            };
            out.push(TemplateReport {
                kind,
                name: name.clone(),
                status,
                reason: Some(reason),
            });
        }
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn index_patterns_match_like_elasticsearch() {
        for (pattern, name, expected) in [
            ("logs-*", "logs-2024.01", true),
            ("logs-*", "logs-", true),
            ("logs-*", "metrics-1", false),
            ("*", "anything", true),
            ("logs-2024.01", "logs-2024.01", true),
            ("logs-2024.01", "logs-2024.011", false),
            ("*-2024*", "logs-2024.01", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "ac", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(glob_matches(pattern, name), expected, "{pattern} {name}");
        }
    }

    #[test]
    fn only_templates_of_selected_indices_and_their_components_are_kept() {
        let map = |v: Value| v.as_object().unwrap().clone();
        let mut set = TemplateSet {
            legacy: map(json!({"l-logs": {"index_patterns": ["logs-*"]},
                               "l-old": {"template": "logs-*"},
                               "l-other": {"index_patterns": "other-*"}})),
            index: Some(map(
                json!({"t-logs": {"index_patterns": ["logs-*"], "composed_of": ["c-logs"]},
                                   "t-other": {"index_patterns": ["other-*"], "composed_of": ["c-other"]}}),
            )),
            component: Some(map(json!({"c-logs": {}, "c-other": {}}))),
        };
        keep_needed(&mut set, &["logs-1"]);
        let names = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&set.legacy), ["l-logs", "l-old"]);
        assert_eq!(names(set.index.as_ref().unwrap()), ["t-logs"]);
        assert_eq!(names(set.component.as_ref().unwrap()), ["c-logs"]);
    }

    #[test]
    fn a_target_template_of_higher_priority_is_named() {
        let map = |v: Value| v.as_object().unwrap().clone();
        let archived = map(json!({"t-logs": {"index_patterns": ["logs-*"], "priority": 100}}));
        let existing = map(json!({
            "t-logs": {"index_patterns": ["logs-*"], "priority": 1000},
            "high": {"index_patterns": ["logs-2024*"], "priority": 500},
            "low": {"index_patterns": ["logs-*"], "priority": 5},
            "elsewhere": {"index_patterns": ["other-*"], "priority": 900}
        }));
        let warnings = outranking(&existing, &archived, &["logs-2024.01"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("\"high\""), "{warnings:?}");
    }
}
