//! Templates on the target: which of the archive's a restore puts back (a
//! selective restore only those its indices need), whether each was
//! created, replaced or kept, and which of the target's own templates of
//! higher priority will shape a restored index.
//!
//! Elasticsearch applies the one composable template of highest priority
//! whose `index_patterns` match a new index, and every matching legacy one
//! when no composable template matches
//! (<https://www.elastic.co/guide/en/elasticsearch/reference/current/index-templates.html>).

use serde_json::{Map, Value};

use super::report::{Status, TemplateReport};
use super::target::Mode;
use crate::catalog::{matches_any, TemplateSet};
use crate::cluster::templates::{PutOutcome, TemplateKind};
use crate::cluster::Cluster;

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

fn priority(body: &Value) -> i64 {
    body.get("priority").and_then(Value::as_i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::glob_matches;
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
