//! `GET /metrics`: Prometheus counters and gauges (OpenMetrics text, which
//! Prometheus reads): jobs by kind and status (counted in the database at
//! each scrape, so they are right after a restart too), and the documents,
//! bytes and rejected documents the jobs of this process moved.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::db::{Db, DbError};
use super::progress::Progress;
use super::status::Kind;

type Labels = Vec<(String, String)>;

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    jobs: Family<Labels, Gauge>,
    documents: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let jobs = Family::<Labels, Gauge>::default();
        let documents = Family::<Labels, Counter>::default();
        let bytes = Family::<Labels, Counter>::default();
        let rejected = Family::<Labels, Counter>::default();
        registry.register("esark_jobs", "Jobs by kind and status", jobs.clone());
        registry.register(
            "esark_documents",
            "Documents moved by finished job runs, by kind",
            documents.clone(),
        );
        registry.register(
            "esark_bytes",
            "Bytes moved by finished job runs, by kind",
            bytes.clone(),
        );
        registry.register(
            "esark_rejected_documents",
            "Documents the target refused, by kind",
            rejected.clone(),
        );
        Metrics {
            registry,
            jobs,
            documents,
            bytes,
            rejected,
        }
    }

    /// Counts what a job run moved, when it ends.
    pub fn job_ended(&self, kind: Kind, progress: &Progress) {
        let labels = vec![("kind".to_string(), kind.as_str().to_string())];
        self.documents
            .get_or_create(&labels)
            .inc_by(progress.docs_done);
        self.bytes
            .get_or_create(&labels)
            .inc_by(progress.bytes_done);
        self.rejected
            .get_or_create(&labels)
            .inc_by(progress.rejected);
    }

    /// The text of a scrape.
    pub fn render(&self, db: &Db) -> Result<String, DbError> {
        self.jobs.clear();
        for (kind, status, n) in db.counts()? {
            let labels = vec![("kind".to_string(), kind), ("status".to_string(), status)];
            self.jobs.get_or_create(&labels).set(n as i64);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::db::NewJob;

    #[test]
    fn jobs_and_documents_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        db.insert(NewJob {
            kind: Kind::Export,
            cluster: "c".into(),
            target_cluster: None,
            archive: Some("a".into()),
            options: serde_json::json!({}),
            created_by: "ci".into(),
            idempotency_key: None,
        })
        .unwrap();
        let metrics = Metrics::new();
        metrics.job_ended(
            Kind::Import,
            &Progress {
                docs_done: 7,
                bytes_done: 70,
                rejected: 1,
                ..Default::default()
            },
        );
        let text = metrics.render(&db).unwrap();
        for line in [
            "esark_jobs{kind=\"export\",status=\"queued\"} 1",
            "esark_documents_total{kind=\"import\"} 7",
            "esark_bytes_total{kind=\"import\"} 70",
            "esark_rejected_documents_total{kind=\"import\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
