//! Helpers shared by the integration tests.
//!
//! - [`server`]: a [`server::TestCluster`] (private osmem, `ESARK_TEST_URL`,
//!   or `ESARK_TEST_TARGET_URL` as the target) with a small blocking JSON
//!   client that names, creates and cleans up per-test indices and templates.
//! - [`moto`]: a private `moto_server` (S3) for the tests of archives on
//!   object storage.
//! - [`osmem`]: the private osmem-server child process behind a test cluster.
//! - [`front`]: one test HTTP front (hyper) with a stack of layers: Basic
//!   or bearer authentication, SigV4 verification, data stream emulation,
//!   fault injection, scripted answers.
//! - [`proxy`]: an HTTP proxy that demands Basic authentication or a bearer
//!   token, for the credential tests (osmem itself has none), a front with
//!   one layer.
//! - [`tls`]: a TLS front for osmem, optionally demanding a client
//!   certificate of a test CA ([`tls::TestCa`]).
//! - [`sigv4`]: an AWS SigV4 verifier, written from the specification, that
//!   [`proxy::AuthProxy::start_sigv4`] puts in front of a test cluster.
//! - [`esark`]: runs the `esark` binary with a timeout and captures its output.
//! - [`archive`]: reads an archive folder back (manifest, metadata, data lines).
//! - [`check`]: assertions on archives and on failed runs.
//! - [`fixture`]: the standard seeded data set (indices, aliases, templates).
//! - [`serve`]: `esark serve` as a child process, with a blocking JSON client.
//! - [`skip`]: visible skips (`SKIPPED <test>: <reason>`), counted by
//!   `scripts/test.sh`.
//! - [`faults`]: an HTTP proxy that injects seeded, bounded faults (429/503,
//!   rejected bulk items, resets, slow or lost answers, expired contexts).

// Each helper module is used by some tests and not by others.
#![allow(dead_code)]

pub mod archive;
pub mod check;
pub mod esark;
pub mod faults;
pub mod fixture;
pub mod front;
pub mod moto;
pub mod osmem;
pub mod proxy;
pub mod restore_support;
pub mod serve;
pub mod serve_archives;
pub mod server;
pub mod sigv4;
pub mod skip;
pub mod tls;
