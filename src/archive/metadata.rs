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
pub fn typeless(mappings: Value) -> Result<Value, String> {
    let Value::Object(mut map) = mappings else {
        return Err("\"mappings\" is not an object".into());
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
                _ => Err("the mapping type is not an object".into()),
            }
        }
        _ => Err(format!(
            "several mapping types ({}): an index of Elasticsearch 5 or older cannot be \
             restored into one index",
            map.keys().cloned().collect::<Vec<_>>().join(", ")
        )),
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
}
