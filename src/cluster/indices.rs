//! Index endpoints: listing (`_cat/indices`), settings, mappings, aliases
//! and `_count`. Every name goes into the path percent-encoded.

use elasticsearch::http::Method;
use serde_json::{Map, Value};

use super::model::cat::CatIndex;
use super::{encode_segment, Cluster, ClusterError};

impl Cluster {
    /// Every index the cluster has, hidden and closed ones included, with
    /// its documents and bytes on disk (what the dump sizes pages by).
    pub async fn list_indices(&self) -> Result<Vec<CatIndex>, ClusterError> {
        let mut path = String::from(
            "_cat/indices?format=json&h=index,status,pri,docs.count,pri.store.size&bytes=b",
        );
        if self.info().has_hidden_indices() {
            path.push_str("&expand_wildcards=all");
        }
        let mut list: Vec<CatIndex> = self.call_json(Method::Get, &path, None).await?;
        list.sort_by(|a, b| a.index.cmp(&b.index));
        Ok(list)
    }

    /// Every alias and the indices it points to (`GET /_alias`).
    pub async fn aliases(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>, ClusterError> {
        let answer: Map<String, Value> = self.call_json(Method::Get, "_alias", None).await?;
        let mut aliases = std::collections::BTreeMap::<String, Vec<String>>::new();
        for (index, entry) in answer {
            if let Some(map) = entry.get("aliases").and_then(Value::as_object) {
                for alias in map.keys() {
                    aliases
                        .entry(alias.clone())
                        .or_default()
                        .push(index.clone());
                }
            }
        }
        for indices in aliases.values_mut() {
            indices.sort();
        }
        Ok(aliases)
    }

    /// `GET /{index}/_settings` -> the `settings` object of that index.
    pub async fn index_settings(&self, index: &str) -> Result<Value, ClusterError> {
        self.index_section(index, "_settings", "settings").await
    }

    /// `GET /{index}/_mapping` -> the `mappings` object of that index.
    pub async fn index_mappings(&self, index: &str) -> Result<Value, ClusterError> {
        self.index_section(index, "_mapping", "mappings").await
    }

    /// `GET /{index}/_alias` -> the `aliases` object of that index.
    pub async fn index_aliases(&self, index: &str) -> Result<Value, ClusterError> {
        self.index_section(index, "_alias", "aliases").await
    }

    /// `GET /{a,b,…}/_settings`: the `settings` object of each of `names`,
    /// by name, in one request, and the size of the answer in bytes.
    pub async fn settings_of(&self, names: &[String]) -> Result<Sections, ClusterError> {
        self.indices_section(names, "_settings", "settings").await
    }

    /// `GET /{a,b,…}/_alias`: the `aliases` object of each of `names`, by
    /// name, in one request (an index without aliases answers `{}`), and
    /// the size of the answer in bytes.
    pub async fn aliases_of(&self, names: &[String]) -> Result<Sections, ClusterError> {
        self.indices_section(names, "_alias", "aliases").await
    }

    /// `GET /{a,b,…}/_mapping`: the `mappings` object of each of `names`,
    /// by name, in one request, and the size of the answer in bytes.
    pub async fn mappings_of(&self, names: &[String]) -> Result<Sections, ClusterError> {
        self.indices_section(names, "_mapping", "mappings").await
    }

    /// `GET /{index}/_count`, or `POST` with `query` (raw JSON).
    pub async fn count(&self, index: &str, query: Option<&str>) -> Result<u64, ClusterError> {
        let path = format!("{}/_count", encode_segment(index));
        let v: Value = match query {
            None => self.call_json(Method::Get, &path, None).await?,
            Some(q) => {
                let body = bytes::Bytes::from(format!("{{\"query\":{q}}}"));
                self.call_json(Method::Post, &path, Some(body)).await?
            }
        };
        v.get("count")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.bad_response(Method::Get, &path, "no \"count\"".into()))
    }

    /// [`Self::index_section`] for several indices, by name: names the
    /// answer does not have are left out.
    async fn indices_section(
        &self,
        names: &[String],
        endpoint: &str,
        key: &str,
    ) -> Result<Sections, ClusterError> {
        let list: Vec<String> = names.iter().map(|n| encode_segment(n)).collect();
        let path = format!("{}/{endpoint}", list.join(","));
        let bytes = self.call(Method::Get, &path, None).await?;
        let answer: Map<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|e| self.bad_response(Method::Get, &path, e.to_string()))?;
        let by_name = answer
            .into_iter()
            .filter(|(name, _)| names.contains(name))
            .map(|(name, entry)| {
                let section = entry
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Map::new()));
                (name, section)
            })
            .collect();
        Ok(Sections {
            by_name,
            bytes: bytes.len(),
        })
    }

    async fn index_section(
        &self,
        index: &str,
        endpoint: &str,
        key: &str,
    ) -> Result<Value, ClusterError> {
        let path = format!("{}/{endpoint}", encode_segment(index));
        let answer: Map<String, Value> = self.call_json(Method::Get, &path, None).await?;
        // The answer is keyed by the concrete index name.
        let entry = answer
            .get(index)
            .or_else(|| {
                (answer.len() == 1)
                    .then(|| answer.values().next())
                    .flatten()
            })
            .ok_or_else(|| {
                self.bad_response(Method::Get, &path, format!("no entry for index {index:?}"))
            })?;
        Ok(entry
            .get(key)
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())))
    }
}

/// One section (settings, mappings or aliases) of several indices, read in
/// one request: by index name (names the answer did not have are left
/// out), and the answer's size in bytes.
#[derive(Debug, Default)]
pub struct Sections {
    pub by_name: std::collections::HashMap<String, Value>,
    pub bytes: usize,
}

/// What a name refers to on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameKind {
    Missing,
    /// A concrete index.
    Index,
    /// An alias, with the indices holding it.
    Alias(Vec<String>),
}

/// Every index and alias name a cluster had when it was asked
/// ([`Cluster::names`]): what a restore of many indices checks its target
/// names against, instead of one [`Cluster::name_kind`] per index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterNames {
    names: std::collections::HashSet<String>,
}

impl ClusterNames {
    /// Whether `name` was an index or an alias.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Reads `GET /_alias`'s answer: `{index: {"aliases": {alias: …}}}`.
    fn from_answer(answer: &Map<String, Value>) -> ClusterNames {
        let mut names: std::collections::HashSet<String> = answer.keys().cloned().collect();
        for entry in answer.values() {
            if let Some(aliases) = entry.get("aliases").and_then(Value::as_object) {
                names.extend(aliases.keys().cloned());
            }
        }
        ClusterNames { names }
    }
}

impl Cluster {
    /// Every index (hidden ones too) and alias name, in one request:
    /// `GET /_alias?expand_wildcards=all`.
    pub async fn names(&self) -> Result<ClusterNames, ClusterError> {
        let answer: Map<String, Value> = self
            .call_json(Method::Get, "_alias?expand_wildcards=all", None)
            .await?;
        Ok(ClusterNames::from_answer(&answer))
    }

    /// Whether `name` is an index, an alias (and of which indices), or free.
    pub async fn name_kind(&self, name: &str) -> Result<NameKind, ClusterError> {
        let path = format!("{}/_alias", encode_segment(name));
        let (status, body) = self.request(Method::Get, &path, None).await?;
        if status == 404 {
            return Ok(NameKind::Missing);
        }
        if !(200..300).contains(&status) {
            return Err(self.status_error(Method::Get, &path, status, &body));
        }
        let answer: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| self.bad_response(Method::Get, &path, e.to_string()))?;
        if answer.contains_key(name) {
            Ok(NameKind::Index)
        } else if answer.is_empty() {
            Ok(NameKind::Missing)
        } else {
            Ok(NameKind::Alias(answer.keys().cloned().collect()))
        }
    }

    /// `PUT /{index}` with settings and mappings. A retry whose earlier
    /// attempt may have been acted on (its answer lost) and that is then
    /// told the index exists created it: that is success, not a conflict.
    pub async fn create_index(&self, index: &str, body: &Value) -> Result<(), ClusterError> {
        let path = encode_segment(index);
        let answer = self
            .send(
                Method::Put,
                &path,
                Some(bytes::Bytes::from(body.to_string())),
            )
            .await?;
        self.settled(Method::Put, &path, answer, |e| {
            e.is_type("resource_already_exists_exception")
        })
    }

    /// `DELETE /{index}`. A retry told the index is gone after an earlier
    /// attempt may have deleted it is success.
    pub async fn delete_index(&self, index: &str) -> Result<(), ClusterError> {
        let path = encode_segment(index);
        let answer = self.send(Method::Delete, &path, None).await?;
        self.settled(Method::Delete, &path, answer, |e| {
            e.is_type("index_not_found_exception")
        })
    }

    /// The outcome of a request that changes something: a 2xx, or an
    /// error that `own_doing` recognises as the effect of an earlier
    /// attempt of the same request (only when there was one that may have
    /// been acted on).
    pub(crate) fn settled(
        &self,
        method: Method,
        path: &str,
        answer: super::Answer,
        own_doing: impl Fn(&ClusterError) -> bool,
    ) -> Result<(), ClusterError> {
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        let error = self.status_error(method, path, answer.status, &answer.body);
        if answer.resent && own_doing(&error) {
            tracing::info!(
                "{error}: taken as the effect of an earlier attempt whose answer was lost"
            );
            return Ok(());
        }
        Err(error)
    }

    /// `PUT /{index}/_settings`.
    pub async fn put_index_settings(
        &self,
        index: &str,
        settings: &Value,
    ) -> Result<(), ClusterError> {
        let path = format!("{}/_settings", encode_segment(index));
        self.call(
            Method::Put,
            &path,
            Some(bytes::Bytes::from(settings.to_string())),
        )
        .await
        .map(|_| ())
    }

    /// `POST /_aliases` with a list of actions, applied atomically.
    pub async fn update_aliases(&self, actions: &[Value]) -> Result<(), ClusterError> {
        let body = serde_json::json!({ "actions": actions });
        self.call(
            Method::Post,
            "_aliases",
            Some(bytes::Bytes::from(body.to_string())),
        )
        .await
        .map(|_| ())
    }

    /// `POST /{index}/_refresh`.
    pub async fn refresh(&self, index: &str) -> Result<(), ClusterError> {
        let path = format!("{}/_refresh", encode_segment(index));
        self.call(Method::Post, &path, None).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_indices_and_their_aliases() {
        let answer = serde_json::json!({
            ".hidden": {"aliases": {"al": {}, "other": {"is_write_index": true}}},
            "plain": {"aliases": {}},
            "odd": {}
        });
        let names = ClusterNames::from_answer(answer.as_object().unwrap());
        for name in [".hidden", "al", "other", "plain", "odd"] {
            assert!(names.contains(name), "{name}");
        }
        assert!(!names.contains("missing"));
        assert!(!names.contains("aliases"));
    }
}
