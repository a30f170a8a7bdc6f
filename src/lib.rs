//! esark: a streaming Elasticsearch/OpenSearch dump and restore engine.
//!
//! A dump streams every selected index of a cluster through sliced scroll
//! readers and bounded channels into compressed JSONL chunk writers, and
//! records everything needed to rebuild the cluster (settings, mappings,
//! aliases, templates) in a self-describing, checksummed archive.
//!
//! # Layout
//!
//! Layers that only point down (`scripts/import-graph.py` checks them, and
//! that no file of `src/` imports one that imports it back):
//!
//! ```text
//! cli, serve ──> commands ──> shared model ──> stages ──> foundations
//!         dump          plan             source     archive (format, store)
//!         restore       catalog          sink       cluster, retry, aws
//!         verify                                    job (events, cancel)
//!         inspect
//! ```
//!
//! | layer | what | module |
//! |---|---|---|
//! | front end | parse (`clap`), resolve into configs, draw a job's events as bars, print reports | [`cli`] |
//! | front end | the HTTP job service (`esark serve`): jobs in a database, roles, archives over HTTP | [`serve`] |
//! | command | a dump end to end: catalog, metadata files, data pipeline, manifest last | [`dump`] |
//! | | its slices wired to chunk writers through bounded channels; its checkpoint; `--output -` | [`dump::pipeline`], [`dump::checkpoint`], [`dump::pipe`] |
//! | command | restore and copy as library jobs; one index; its load through the bulk stage | [`restore`], [`restore::job`] |
//! | command | verify (documents by digest, metadata) as a library job | [`verify`], [`verify::job`] |
//! | command | inspect: an archive checked without a cluster | [`inspect`] |
//! | shared model | what a restore, copy or verify will do, from an archive, a cluster or a foreign dump | [`plan`] |
//! | shared model | what a cluster holds and how it is selected: indices, metadata, templates | [`catalog`] |
//! | stage | reading documents: sliced scroll/PIT readers, archive chunks, foreign dumps | [`source`] |
//! | stage | writing documents: chunk writers, bulk builder and indexer, rate limits, rejects | [`sink`] |
//! | foundation | the archive format: manifest, versions and their readers, naming, compression, the store | [`archive`], [`archive::store`] |
//! | foundation | talking to a cluster: config, transport (one retry policy), endpoints, wire types | [`cluster`] |
//! | foundation | retry decisions apart from retry mechanics (backoff) | [`retry`] |
//! | foundation | what every job shares: typed events and the cancellation token | [`job`] |
//! | foundation | AWS credentials and SigV4 signing | [`aws`] |
//! | foundation | the esark stream format of pipes (header, documents, trailer) | [`stream`] |
//! | foundation | error-chain helpers | [`errors`] |
//! | data | the sample data set (quick start, benchmarks) | [`sample`] |
//!
//! # Jobs
//!
//! Every command is a library call taking its resolved config, an
//! [`job::Events`] handle and a [`job::CancellationToken`], and returning a
//! typed report: [`dump::run`], [`restore::job::restore`],
//! [`restore::job::copy`], [`verify::job::verify`]. The engine reports only
//! through the events; the command line draws them, a service would store
//! them.

pub mod archive;
pub mod aws;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod dump;
pub mod errors;
pub mod inspect;
pub mod job;
pub mod plan;
pub mod restore;
pub mod retry;
pub mod sample;
pub mod serve;
pub mod sink;
pub mod source;
pub mod stream;
pub mod verify;

/// The version of this tool, recorded in every manifest.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
