//! `GET /`: cluster name, uuid, flavor and version.

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct RootResponse {
    #[serde(default)]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub cluster_uuid: Option<String>,
    #[serde(default)]
    pub version: Option<RootVersion>,
}

#[derive(Debug, Deserialize)]
pub struct RootVersion {
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub distribution: Option<String>,
}

/// Which product a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    #[default]
    Elasticsearch,
    Opensearch,
}

/// Why a `GET /` answer is not one of a search engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    #[error("GET / has no \"version\" object")]
    NoVersion,
    #[error("GET / has no \"version.number\"")]
    NoVersionNumber,
    #[error("unreadable version number {0:?}")]
    BadVersionNumber(String),
}

/// What esark knows about a cluster after `GET /`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterInfo {
    pub cluster_name: String,
    pub cluster_uuid: String,
    pub flavor: Flavor,
    pub version: String,
    /// Major version, parsed from `version`.
    #[serde(skip)]
    pub major: u32,
}

impl ClusterInfo {
    /// Interprets a `GET /` answer; `Err` says why it is not a search engine.
    pub fn from_root(root: RootResponse) -> Result<ClusterInfo, InfoError> {
        let version = root.version.ok_or(InfoError::NoVersion)?;
        let number = version.number.ok_or(InfoError::NoVersionNumber)?;
        let Some(major) = number.split('.').next().and_then(|m| m.parse::<u32>().ok()) else {
            return Err(InfoError::BadVersionNumber(number));
        };
        let flavor = match version.distribution.as_deref() {
            Some("opensearch") => Flavor::Opensearch,
            _ => Flavor::Elasticsearch,
        };
        Ok(ClusterInfo {
            cluster_name: root.cluster_name.unwrap_or_default(),
            cluster_uuid: root.cluster_uuid.unwrap_or_default(),
            flavor,
            version: number,
            major,
        })
    }

    /// Whether this flavor and major version are ones esark is tested with:
    /// Elasticsearch 6–9, OpenSearch 1–3.
    pub fn is_supported(&self) -> bool {
        match self.flavor {
            Flavor::Elasticsearch => (6..=9).contains(&self.major),
            Flavor::Opensearch => (1..=3).contains(&self.major),
        }
    }

    /// Whether `expand_wildcards` is accepted by `_cat/indices` (Elasticsearch
    /// 7+ and every OpenSearch; 6.x has no hidden indices and rejects it).
    pub fn has_hidden_indices(&self) -> bool {
        self.flavor == Flavor::Opensearch || self.major >= 7
    }

    /// Whether composable index templates and component templates exist
    /// (Elasticsearch 7.8+, every OpenSearch).
    pub fn has_composable_templates(&self) -> bool {
        self.is_opensearch_or_elasticsearch_at_least(7, 8)
    }

    /// Whether data streams exist (Elasticsearch 7.9+, every OpenSearch; a
    /// server without them answers the listing with an error that
    /// [`crate::cluster::extras::is_not_offered`] knows).
    pub fn has_data_streams(&self) -> bool {
        self.is_opensearch_or_elasticsearch_at_least(7, 9)
    }

    fn is_opensearch_or_elasticsearch_at_least(&self, major: u32, minor: u32) -> bool {
        match self.flavor {
            Flavor::Opensearch => true,
            Flavor::Elasticsearch => {
                let own_minor = self
                    .version
                    .split('.')
                    .nth(1)
                    .and_then(|m| m.parse::<u32>().ok())
                    .unwrap_or(0);
                self.major > major || (self.major == major && own_minor >= minor)
            }
        }
    }
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flavor::Elasticsearch => "Elasticsearch",
            Flavor::Opensearch => "OpenSearch",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ClusterInfo, InfoError> {
        ClusterInfo::from_root(serde_json::from_str(body).unwrap())
    }

    #[test]
    fn opensearch_root() {
        let info = parse(r#"{"cluster_name":"osmem","cluster_uuid":"u","name":"n","version":{"distribution":"opensearch","number":"3.8.0"},"tagline":"The OpenSearch Project: https://opensearch.org/"}"#).unwrap();
        assert_eq!(info.flavor, Flavor::Opensearch);
        assert_eq!(info.major, 3);
        assert!(info.is_supported() && info.has_composable_templates());
    }

    #[test]
    fn elasticsearch_versions() {
        let es6 = parse(r#"{"cluster_name":"c","cluster_uuid":"u","version":{"number":"6.8.23"}}"#)
            .unwrap();
        assert_eq!(es6.flavor, Flavor::Elasticsearch);
        assert!(es6.is_supported() && !es6.has_hidden_indices() && !es6.has_composable_templates());
        let es77 = parse(r#"{"version":{"number":"7.7.1","build_flavor":"default"}}"#).unwrap();
        assert!(!es77.has_composable_templates());
        let es78 = parse(r#"{"version":{"number":"7.8.0"}}"#).unwrap();
        assert!(es78.has_composable_templates() && !es78.has_data_streams());
        let es79 = parse(r#"{"version":{"number":"7.9.3"}}"#).unwrap();
        assert!(es79.has_data_streams());
        let es5 = parse(r#"{"version":{"number":"5.6.0"}}"#).unwrap();
        assert!(!es5.is_supported());
    }

    #[test]
    fn not_a_search_engine() {
        assert!(parse(r#"{"status":"ok"}"#).is_err());
        assert!(parse(r#"{"version":{"number":"x.y"}}"#).is_err());
    }
}
