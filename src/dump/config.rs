//! What a dump runs with: the resolved [`DumpConfig`], the options the
//! command line named explicitly ([`AskedOptions`], checked against a
//! checkpoint on `--resume`), and how many slices an index is read with.

use std::sync::Arc;

use regex::Regex;

use super::checkpoint::Checkpoint;
use super::DumpError;
use crate::archive::compression::Compression;
use crate::archive::crypt::{Identities, Recipients};
use crate::archive::manifest::{DumpOptions, RawQuery};
use crate::archive::store::Location;
use crate::catalog::IndexSelector;
use crate::cluster::ClusterConfig;
pub use crate::source::slice::SliceCount;
use crate::source::ReaderKind;

/// A resolved dump: everything the command line said, checked.
#[derive(Debug, Clone)]
pub struct DumpConfig {
    pub source: ClusterConfig,
    /// Where the archive is written: a folder, or a prefix of a bucket.
    pub output: Location,
    pub selector: IndexSelector,
    pub compression: Compression,
    pub level: i32,
    pub slices: SliceCount,
    /// Indices dumped at the same time.
    pub parallel: usize,
    /// Slices read at the same time, over all indices.
    pub readers: usize,
    pub page_size: usize,
    pub file_size: u64,
    pub overwrite: bool,
    /// Continue the interrupted dump in `output`.
    pub resume: bool,
    pub reader: ReaderKind,
    /// Only documents matching this query (raw JSON of a query object).
    pub query: Option<Arc<str>>,
    /// Also dump persistent cluster settings.
    pub include_cluster_settings: bool,
    /// Encrypt every file but the manifest to these (`--encrypt-to`); a
    /// resumed dump takes the ones its checkpoint recorded.
    pub recipients: Option<Recipients>,
    /// Opens the checkpoint of an interrupted encrypted dump (`--resume
    /// --identity`).
    pub identity: Option<Identities>,
    /// The options that shape an archive's files which the command line
    /// named explicitly: a resumed dump refuses those that contradict the
    /// ones it recorded.
    pub asked: AskedOptions,
}

/// Options given explicitly on the command line, among those a dump
/// records (`None`: not given, the recorded or default value applies).
#[derive(Debug, Clone, Default)]
pub struct AskedOptions {
    pub compression: Option<Compression>,
    pub level: Option<i32>,
    pub slices: Option<String>,
    pub page_size: Option<usize>,
    pub file_size: Option<u64>,
    pub match_: Option<String>,
    pub exclude: Option<String>,
    pub query: Option<Arc<str>>,
    pub reader: Option<ReaderKind>,
}

impl AskedOptions {
    /// Each given option that differs from what the interrupted dump
    /// recorded, as `--flag X (recorded: Y)`.
    pub fn contradictions(&self, recorded: &DumpOptions, reader: ReaderKind) -> Vec<String> {
        fn differs<T: PartialEq + std::fmt::Display>(
            out: &mut Vec<String>,
            flag: &str,
            asked: Option<T>,
            recorded: Option<T>,
        ) {
            if let Some(asked) = asked {
                if Some(&asked) != recorded.as_ref() {
                    let was = recorded.map_or("none".to_string(), |r| r.to_string());
                    out.push(format!("--{flag} {asked} (recorded: {was})"));
                }
            }
        }
        let mut out = Vec::new();
        differs(
            &mut out,
            "compression",
            self.compression,
            Some(recorded.compression),
        );
        differs(&mut out, "level", self.level, Some(recorded.level));
        differs(
            &mut out,
            "slices",
            self.slices.clone(),
            Some(recorded.slices.clone()),
        );
        differs(
            &mut out,
            "page-size",
            self.page_size,
            Some(recorded.page_size),
        );
        differs(
            &mut out,
            "file-size",
            self.file_size,
            Some(recorded.file_size),
        );
        differs(
            &mut out,
            "match",
            self.match_.clone(),
            recorded.match_.clone(),
        );
        differs(
            &mut out,
            "exclude",
            self.exclude.clone(),
            recorded.exclude.clone(),
        );
        let name = |r: ReaderKind| {
            clap::ValueEnum::to_possible_value(&r)
                .map_or_else(|| format!("{r:?}"), |v| v.get_name().to_string())
        };
        differs(
            &mut out,
            "reader",
            self.reader.map(name),
            Some(name(reader)),
        );
        if let Some(asked) = &self.query {
            let same = match (RawQuery::new(asked), &recorded.query) {
                (Ok(a), Some(r)) => &a == r,
                _ => false,
            };
            if !same {
                let was = recorded.query.as_ref().map_or("none", |q| q.get());
                out.push(format!("--query {asked} (recorded: {was})"));
            }
        }
        out
    }
}

/// Default documents per scroll page (see `esark dump --help`).
///
/// Measured on the benchmark's 100,000 documents of ~0.9 KB against
/// osmem, runs interleaved with the raw scroll baseline (page 5000): with
/// pages of 1000 the dump took 0.47-0.96 s (median 0.57 s, 7 runs; in
/// another set of 7, 0.76-0.94 s), with pages of 2000 0.45-0.79 s (median
/// 0.48 s; 0.43-0.50 s), with pages of 3000 0.40-0.48 s, for the same
/// client CPU (0.25-0.28 s): the server's cost per page, not the client's,
/// made the difference. Peak resident memory: 34, 45 and 57-61 MiB. Each
/// page in flight is held a few times (response body, archive lines,
/// compression), so memory grows with the page size: for documents of
/// tens of KB, a smaller `--page-size` keeps it down. (Earlier, pages of
/// 1000 and 2000 had measured the same on this benchmark, when the
/// client's own CPU per page was higher.)
pub const DEFAULT_PAGE_SIZE: usize = 2000;

/// Default size at which a chunk file is closed and the next one begun.
pub const DEFAULT_FILE_SIZE: u64 = 1 << 30;

impl DumpConfig {
    /// A dump of `source` into `output` (a folder, as a path) with the
    /// command line's defaults: indices not starting with `.`, lz4, slices
    /// per shard.
    pub fn new(source: ClusterConfig, output: impl Into<Location>) -> DumpConfig {
        DumpConfig {
            source,
            output: output.into(),
            selector: IndexSelector::default(),
            compression: Compression::DEFAULT,
            level: Compression::DEFAULT.default_level(),
            slices: SliceCount::Auto,
            parallel: 2,
            readers: super::DEFAULT_READERS,
            page_size: DEFAULT_PAGE_SIZE,
            file_size: DEFAULT_FILE_SIZE,
            overwrite: false,
            resume: false,
            reader: ReaderKind::Auto,
            query: None,
            include_cluster_settings: false,
            recipients: None,
            identity: None,
            asked: AskedOptions::default(),
        }
    }

    /// The options recorded in the manifest (and the checkpoint).
    pub fn options(&self) -> Result<DumpOptions, DumpError> {
        Ok(DumpOptions {
            compression: self.compression,
            level: self.level,
            slices: self.slices.to_string(),
            page_size: self.page_size,
            file_size: self.file_size,
            match_: self
                .selector
                .include
                .as_ref()
                .map(|r| r.as_str().to_string()),
            exclude: self
                .selector
                .exclude
                .as_ref()
                .map(|r| r.as_str().to_string()),
            query: self
                .query
                .as_deref()
                .map(RawQuery::new)
                .transpose()
                .map_err(|e| DumpError::BadQuery(e.to_string()))?,
        })
    }

    /// This config with the options an interrupted dump ran with: they
    /// shaped the files already on disk, so a resumed run must keep them.
    pub(super) fn resumed_with(&self, checkpoint: &Checkpoint) -> Result<DumpConfig, DumpError> {
        let o = &checkpoint.options;
        let contradictions = self.asked.contradictions(o, checkpoint.reader);
        if !contradictions.is_empty() {
            return Err(DumpError::ResumeContradicts(contradictions));
        }
        let recorded = Recipients::from_strings(&checkpoint.recipients)
            .map_err(|e| DumpError::BadCheckpoint(e.to_string()))?;
        let names = |r: &Option<Recipients>| r.as_ref().map(Recipients::to_strings);
        if self.recipients.is_some() && names(&self.recipients) != names(&recorded) {
            return Err(DumpError::ResumeContradicts(vec![match &recorded {
                Some(r) => format!(
                    "--encrypt-to (the interrupted dump encrypts to {})",
                    r.to_strings().join(", ")
                ),
                None => "--encrypt-to (the interrupted dump is not encrypted)".into(),
            }]));
        }
        let regex = |r: &Option<String>| -> Result<Option<Regex>, DumpError> {
            r.as_deref()
                .map(|r| Regex::new(r).map_err(|e| DumpError::BadCheckpoint(e.to_string())))
                .transpose()
        };
        Ok(DumpConfig {
            selector: IndexSelector {
                include: regex(&o.match_)?,
                exclude: regex(&o.exclude)?,
                all_by_default: false,
            },
            compression: o.compression,
            level: o.level,
            slices: match o.slices.as_str() {
                "auto" => SliceCount::Auto,
                n => SliceCount::Fixed(
                    n.parse()
                        .map_err(|_| DumpError::BadCheckpoint(format!("slices {n:?}")))?,
                ),
            },
            page_size: o.page_size,
            file_size: o.file_size,
            reader: checkpoint.reader,
            query: o.query.as_ref().map(|q| Arc::from(q.get())),
            recipients: recorded,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::manifest::SourceCluster;

    fn recipients(n: usize) -> Recipients {
        let keys: Vec<String> = (0..n)
            .map(|_| age::x25519::Identity::generate().to_public().to_string())
            .collect();
        Recipients::parse(&keys, &[]).unwrap().unwrap()
    }

    fn interrupted(config: &DumpConfig) -> Checkpoint {
        let source = SourceCluster {
            url: "http://h/".into(),
            cluster_name: "c".into(),
            cluster_uuid: "u".into(),
            flavor: Default::default(),
            version: "2.0.0".into(),
        };
        Checkpoint::new(
            "now".into(),
            source,
            config.options().unwrap(),
            config.reader,
        )
        .encrypted_to(config.recipients.as_ref())
    }

    /// A resumed dump keeps the recipients its checkpoint recorded, and
    /// refuses others (or encryption of a dump that was not encrypted).
    #[test]
    fn a_resumed_dump_keeps_its_recipients_and_refuses_others() {
        let plain = DumpConfig::new(
            ClusterConfig::new("http://h:9200").unwrap(),
            std::path::PathBuf::from("o"),
        );
        let mut sealed = plain.clone();
        sealed.recipients = Some(recipients(2));
        let checkpoint = interrupted(&sealed);
        let json = serde_json::to_string(&checkpoint).unwrap();
        assert!(!json.contains("AGE-SECRET-KEY"), "{json}");

        // Not given again: the recorded ones.
        let resumed = plain.resumed_with(&checkpoint).unwrap();
        let names = |c: &DumpConfig| c.recipients.as_ref().map(Recipients::to_strings);
        assert_eq!(names(&resumed), names(&sealed));
        // Given again, the same: fine.
        assert_eq!(
            names(&sealed.resumed_with(&checkpoint).unwrap()),
            names(&sealed)
        );
        // Others: refused.
        let mut other = plain.clone();
        other.recipients = Some(recipients(1));
        let e = other.resumed_with(&checkpoint).unwrap_err().to_string();
        assert!(
            e.contains("--encrypt-to (the interrupted dump encrypts to"),
            "{e}"
        );
        // Encrypting a dump that started in the clear: refused.
        let e = other
            .resumed_with(&interrupted(&plain))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not encrypted"), "{e}");
        assert!(plain
            .resumed_with(&interrupted(&plain))
            .unwrap()
            .recipients
            .is_none());
    }
}
