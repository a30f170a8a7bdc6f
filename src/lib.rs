//! esark: a streaming Elasticsearch/OpenSearch dump and restore engine.
//!
//! A dump streams every selected index of a cluster through sliced scroll
//! readers and bounded channels into compressed JSONL chunk writers, and
//! records everything needed to rebuild the cluster (settings, mappings,
//! aliases, templates) in a self-describing, checksummed archive.
//!
//! # Layout
//!
//! | stage | module |
//! |---|---|
//! | command line: parse (`clap`) and resolve into configs | [`cli`] |
//! | talking to a cluster: transport, flavor detection, endpoints, wire types | [`cluster`] |
//! | reading documents: sliced scroll readers | [`source`] |
//! | writing documents: compressed, checksummed chunk writers | [`sink`] |
//! | the on-disk format: manifest, versions, naming, compression, readers | [`archive`] |
//! | wiring a dump's readers to its writers with bounded channels | [`dump::pipeline`] |
//! | a dump's checkpoint, for `--resume` | [`dump::checkpoint`] |
//! | the catalog every command shares: selection, index metadata, templates | [`catalog`] |
//! | the dump command end to end | [`dump`] |
//! | the inspect command | [`inspect`] |
//! | one index to or from a pipe (`--output -`) | [`stream`] |
//! | what every job shares: its typed events and its cancellation token | [`job`] |
//! | retry decisions and backoff mechanics | [`retry`] |
//! | AWS credentials and SigV4 signing (foundation, no cluster knowledge) | [`aws`] |
//! | error-chain helpers shared by every layer | [`errors`] |
//! | the sample data set (quick start, benchmarks) | [`sample`] |

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
pub mod sink;
pub mod source;
pub mod stream;
pub mod verify;

/// The version of this tool, recorded in every manifest.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
