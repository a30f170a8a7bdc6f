//! Index metadata as archived: settings without the keys a server generates.
//!
//! A restore must be able to `PUT` the archived settings back; keys that the
//! server sets itself are refused or meaningless there, so they are dropped
//! at dump time. The list follows what Elasticsearch and OpenSearch report as
//! private or read-only index settings:
//! <https://www.elastic.co/guide/en/elasticsearch/reference/current/index-modules.html>

use serde_json::{Map, Value};

/// Dotted paths under `settings.index` that a server generates.
pub const GENERATED_INDEX_SETTINGS: &[&str] = &[
    "uuid",
    "creation_date",
    "creation_date_string",
    "version",
    "provided_name",
    "resize",
    "routing.allocation.initial_recovery",
    "history.uuid",
    "verified_before_close",
];

/// Removes generated keys from a `settings` object (`{"index": {...}}`,
/// nested form) and prunes objects left empty.
pub fn strip_generated(settings: &mut Value) {
    let Some(index) = settings.get_mut("index").and_then(Value::as_object_mut) else {
        return;
    };
    for path in GENERATED_INDEX_SETTINGS {
        let parts: Vec<&str> = path.split('.').collect();
        remove_path(index, &parts);
    }
}

fn remove_path(map: &mut Map<String, Value>, parts: &[&str]) {
    match parts {
        [] => {}
        [last] => {
            map.remove(*last);
        }
        [head, rest @ ..] => {
            if let Some(Value::Object(child)) = map.get_mut(*head) {
                remove_path(child, rest);
                if child.is_empty() {
                    map.remove(*head);
                }
            }
        }
    }
}

/// Keys of a typeless mapping (Elasticsearch 7+ and OpenSearch): a single
/// top-level key outside this list is an Elasticsearch 6 mapping type.
const MAPPING_KEYS: &[&str] = &[
    "properties",
    "dynamic",
    "dynamic_templates",
    "date_detection",
    "numeric_detection",
    "dynamic_date_formats",
    "_source",
    "_routing",
    "_meta",
    "_all",
    "_field_names",
    "_size",
    "_data_stream_timestamp",
    "enabled",
    "runtime",
    "subobjects",
];

/// Removes the mapping type of an Elasticsearch 6 (or 5) mapping:
/// `{"_doc":{"properties":…}}` -> `{"properties":…}`. `_default_` is
/// dropped; several real types cannot be merged into one index.
pub fn typeless(mappings: Value) -> Result<Value, MappingError> {
    let Value::Object(mut map) = mappings else {
        return Err(MappingError::NotAnObject);
    };
    if map.is_empty() || map.keys().any(|k| MAPPING_KEYS.contains(&k.as_str())) {
        return Ok(Value::Object(map));
    }
    if map.len() > 1 {
        map.remove("_default_");
    }
    match map.len() {
        1 => {
            let (_, inner) = map.into_iter().next().expect("one entry");
            match inner {
                Value::Object(_) => Ok(inner),
                _ => Err(MappingError::TypeNotAnObject),
            }
        }
        _ => Err(MappingError::SeveralTypes(map.keys().cloned().collect())),
    }
}

/// Why archived mappings cannot become the mappings of one index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("\"mappings\" is not an object")]
    NotAnObject,
    #[error("the mapping type is not an object")]
    TypeNotAnObject,
    /// An index of Elasticsearch 5 or older with several mapping types.
    #[error(
        "several mapping types ({}): an index of Elasticsearch 5 or older cannot be \
         restored into one index",
        .0.join(", ")
    )]
    SeveralTypes(Vec<String>),
}

/// Field types that Elasticsearch and OpenSearch name differently, with
/// how one becomes the other: `(type, its counterpart)`.
pub const FIELD_TYPE_COUNTERPARTS: &[(&str, &str)] = &[
    // Elasticsearch 7.3+ / OpenSearch 2.7+: an object indexed as keywords.
    ("flattened", "flat_object"),
    ("flat_object", "flattened"),
    // Vectors: Elasticsearch's `dims`, OpenSearch's (k-NN) `dimension`.
    ("dense_vector", "knn_vector"),
    ("knn_vector", "dense_vector"),
];

/// The field type a mapping error says the target does not know, from
/// `No handler for type [T] declared on field [F]` (Elasticsearch and
/// OpenSearch alike).
pub fn unknown_field_type(reason: &str) -> Option<String> {
    let start = reason.find("No handler for type [")? + "No handler for type [".len();
    let end = reason[start..].find(']')? + start;
    Some(reason[start..end].to_string())
}

/// Rewrites every field of type `from` (in `properties`, nested objects and
/// multi-fields) as its counterpart of the other flavor. Returns one note
/// per field rewritten (`field: from -> to`, with what was left out), none
/// when `from` has no counterpart or no field has it.
pub fn convert_field_type(mappings: &mut Value, from: &str) -> Vec<String> {
    let Some((_, to)) = FIELD_TYPE_COUNTERPARTS.iter().find(|(f, _)| *f == from) else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    convert_in(mappings, "", from, to, &mut notes);
    notes
}

fn convert_in(node: &mut Value, path: &str, from: &str, to: &str, notes: &mut Vec<String>) {
    let Some(map) = node.as_object_mut() else {
        return;
    };
    for key in ["properties", "fields"] {
        let Some(Value::Object(children)) = map.get_mut(key) else {
            continue;
        };
        for (name, field) in children.iter_mut() {
            let here = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            if field.get("type").and_then(Value::as_str) == Some(from) {
                let (converted, left_out) = counterpart(field, to);
                let mut note = format!("field {here}: {from} -> {to}");
                if !left_out.is_empty() {
                    note.push_str(&format!(" (left out: {})", left_out.join(", ")));
                }
                notes.push(note);
                *field = converted;
            }
            convert_in(field, &here, from, to, notes);
        }
    }
}

/// A field mapping as its counterpart type, and the parameters that have
/// no equivalent there.
fn counterpart(field: &Value, to: &str) -> (Value, Vec<String>) {
    let empty = Map::new();
    let params = field.as_object().unwrap_or(&empty);
    let mut out = Map::new();
    out.insert("type".into(), Value::String(to.into()));
    let carried: &[(&str, &str)] = match to {
        "knn_vector" => &[("dims", "dimension")],
        "dense_vector" => &[("dimension", "dims")],
        _ => &[],
    };
    let mut left_out = Vec::new();
    for (key, value) in params {
        if key == "type" {
            continue;
        }
        match carried.iter().find(|(k, _)| k == key) {
            Some((_, renamed)) => {
                out.insert((*renamed).to_string(), value.clone());
            }
            None => left_out.push(key.clone()),
        }
    }
    left_out.sort();
    (Value::Object(out), left_out)
}

/// Whether the archived mappings match the target's, counting a field the
/// restore converted to the target flavor's counterpart type as the same
/// when the target holds what the conversion wrote (the server may add its
/// defaults to such a field, as OpenSearch adds `doc_values` to a
/// `knn_vector`). Everything else must be equal.
pub fn same_after_conversion(archived: &Value, live: &Value) -> bool {
    match (archived, live) {
        (Value::Object(a), Value::Object(l)) => {
            let kind =
                |m: &Map<String, Value>| m.get("type").and_then(Value::as_str).map(str::to_string);
            if let (Some(from), Some(to)) = (kind(a), kind(l)) {
                if FIELD_TYPE_COUNTERPARTS.contains(&(from.as_str(), to.as_str())) {
                    let (converted, _) = counterpart(archived, &to);
                    return converted
                        .as_object()
                        .is_some_and(|c| c.iter().all(|(k, v)| l.get(k) == Some(v)));
                }
            }
            a.len() == l.len()
                && a.iter().all(|(key, value)| match l.get(key) {
                    Some(other) if key == "properties" || key == "fields" => match (value, other) {
                        (Value::Object(x), Value::Object(y)) => {
                            x.len() == y.len()
                                && x.iter().all(|(name, field)| {
                                    y.get(name).is_some_and(|o| same_after_conversion(field, o))
                                })
                        }
                        _ => value == other,
                    },
                    Some(other) => value == other,
                    None => false,
                })
        }
        _ => archived == live,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_generated_keys_and_keeps_the_rest() {
        let mut s = json!({"index":{
            "analysis":{"analyzer":{"my":{"type":"custom","tokenizer":"standard"}}},
            "creation_date":"1795437937718","number_of_replicas":"1","number_of_shards":"2",
            "provided_name":"t1","replication":{"type":"DOCUMENT"},"uuid":"osmem18",
            "version":{"created":"137297827"},
            "routing":{"allocation":{"initial_recovery":{"_id":"x"},"include":{"_tier_preference":"data_content"}}},
            "resize":{"source":{"name":"a","uuid":"b"}},
            "history":{"uuid":"h"}
        }});
        strip_generated(&mut s);
        assert_eq!(
            s,
            json!({"index":{
                "analysis":{"analyzer":{"my":{"type":"custom","tokenizer":"standard"}}},
                "number_of_replicas":"1","number_of_shards":"2",
                "replication":{"type":"DOCUMENT"},
                "routing":{"allocation":{"include":{"_tier_preference":"data_content"}}}
            }})
        );
    }

    #[test]
    fn field_types_convert_between_flavors() {
        let reason = "Failed to parse mapping [_doc]: No handler for type [flattened] declared on field [labels]";
        assert_eq!(unknown_field_type(reason).as_deref(), Some("flattened"));
        assert_eq!(unknown_field_type("unknown setting [x]"), None);

        let mut m = json!({"properties": {
            "labels": {"type": "flattened", "depth_limit": 5},
            "meta": {"properties": {"tags": {"type": "flattened"}}},
            "title": {"type": "text", "fields": {"raw": {"type": "flattened"}}},
            "vec": {"type": "dense_vector", "dims": 3, "similarity": "cosine", "index": true}
        }});
        let notes = convert_field_type(&mut m, "flattened");
        assert_eq!(
            notes,
            [
                "field labels: flattened -> flat_object (left out: depth_limit)",
                "field meta.tags: flattened -> flat_object",
                "field title.raw: flattened -> flat_object"
            ]
        );
        let notes = convert_field_type(&mut m, "dense_vector");
        assert_eq!(
            notes,
            ["field vec: dense_vector -> knn_vector (left out: index, similarity)"]
        );
        assert_eq!(
            m,
            json!({"properties": {
                "labels": {"type": "flat_object"},
                "meta": {"properties": {"tags": {"type": "flat_object"}}},
                "title": {"type": "text", "fields": {"raw": {"type": "flat_object"}}},
                "vec": {"type": "knn_vector", "dimension": 3}
            }})
        );
        // And back, for a restore from OpenSearch into Elasticsearch.
        let mut back = m.clone();
        convert_field_type(&mut back, "flat_object");
        convert_field_type(&mut back, "knn_vector");
        assert_eq!(
            back["properties"]["vec"],
            json!({"type": "dense_vector", "dims": 3})
        );
        assert_eq!(back["properties"]["labels"], json!({"type": "flattened"}));
        // A type without a counterpart converts nothing.
        assert!(convert_field_type(&mut back, "text").is_empty());

        let archived =
            json!({"properties": {"labels": {"type": "flattened"}, "n": {"type": "long"}}});
        let live =
            json!({"properties": {"labels": {"type": "flat_object"}, "n": {"type": "long"}}});
        assert!(same_after_conversion(&archived, &live));
        let other =
            json!({"properties": {"labels": {"type": "flat_object"}, "n": {"type": "integer"}}});
        assert!(!same_after_conversion(&archived, &other));
        // Defaults the server adds to a converted field are fine; elsewhere
        // they are a difference.
        let archived = json!({"properties": {"v": {"type": "dense_vector", "dims": 3}, "t": {"type": "text"}}});
        let live = json!({"properties": {"v": {"type": "knn_vector", "dimension": 3, "doc_values": true}, "t": {"type": "text"}}});
        assert!(same_after_conversion(&archived, &live));
        let live = json!({"properties": {"v": {"type": "knn_vector", "dimension": 4}, "t": {"type": "text"}}});
        assert!(!same_after_conversion(&archived, &live));
        let live = json!({"properties": {"v": {"type": "knn_vector", "dimension": 3}, "t": {"type": "text", "norms": false}}});
        assert!(!same_after_conversion(&archived, &live));
    }
}
