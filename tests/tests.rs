//! The single integration-test binary of esark (one binary links once and
//! runs every test in parallel; see ripgrep's `tests/tests.rs`).
//!
//! Every test talks to a real server: a private in-memory `osmem-server`
//! started on `127.0.0.1:0` (install it with `./scripts/install-osmem.sh`),
//! or the shared cluster named by `ESARK_TEST_URL` (with a second one,
//! `ESARK_TEST_TARGET_URL`, as the target of restores and copies). Tests
//! name everything they create with a per-test prefix so they can share one
//! cluster. A test whose precondition is missing says so
//! (`util::skip`: `SKIPPED <test>: <reason>`, counted by `scripts/test.sh`)
//! rather than passing without testing.

// Shared helpers: test cluster, auth proxy, esark runner, archive reader.
mod util;

// Checks of the helpers themselves against osmem; no esark binary needed.
mod harness;
// `esark dump`: documents, metadata, manifest, selection, compression, --json.
mod dump;
// `esark dump` failures: credentials, unreachable source, bad flags, output folder.
mod dump_errors;
// `esark restore`: round trip, modes, --atomic, renaming, rejects, damaged archives.
mod restore;
// `esark dump` of many small indices: one search each, metadata in batches, grown or faulty searches.
mod dump_indices;
// `esark restore` of many small indices: requests per index, a name taken after the listing.
mod restore_indices;
// The bulk indexer alone against scripted answers (the test front's scripted layer):
// item retries, rejects, exhausted retries, create conflicts. No cluster needed.
mod bulk;
// `esark verify`: what differs between an archive and a cluster.
mod verify;
// `esark copy`: cluster to cluster.
mod copy;
// Resilience: dump, restore and copy through a fault-injecting proxy; kill and --resume.
mod faults;
// TLS certificate failures and a full disk.
mod hostile;
// Connection options: bearer tokens, client certificates (mutual TLS), mixed credentials.
mod connect;
// The archive format: older versions, metadata kinds, partial dumps.
mod formats;
// Archives encrypted with age: no plaintext beside the manifest, inspect without the key,
// a missing or wrong identity refused before any write, format 5 for encrypted archives only.
mod crypt;
// `esark restore` of other tools' dumps: multielasticdump, elasticdump, Kourou, bulk NDJSON.
mod foreign;
// AWS SigV4 signing (Amazon OpenSearch Service): dump, restore and copy through a verifying proxy.
mod sigv4;
// Data streams (emulated in front of osmem): dump by name, restore with `create`, modes, verify, copy.
mod data_streams;
// Pipes: `dump --output -` / `restore --input -`, the stream's header and trailer, a reader gone.
mod pipes;
// SIGTERM stops dump, restore and copy like Ctrl-C: settings put back, --resume works.
mod signals;
// `restore --resume` and rejects, exactly once: option checks, re-runs, read-only archives, resent creates, durable rejects.
mod restore_resume;
// Issue 11 (dump, verify, bad input, messages): --overwrite keeps the last good archive,
// failed indices in the manifest, per-index verify, empty selections, line caps, URL checks.
mod safety;
// The engine as a library: dump and restore job calls, their events, cancellation and resume.
mod library;
// Issue 15: archives on S3 against a private moto_server: round trip, multipart chunks,
// missing bucket and credentials, tampered objects, two dumps into one prefix, kill -9 and --resume.
mod s3;
// Issue 11: a restore never harms what it was not asked to touch (--atomic, renames, templates, aliases, --force).
mod restore_safety;
// `esark serve`: the HTTP job service as a child process (config, tokens and roles,
// jobs, archives over HTTP, restarts).
mod serve;
// `esark serve`'s archive endpoints: list, summary, tar download and checked upload, roles,
// refused tars leaving nothing, archives on S3.
mod serve_archives;
// `esark jobs`, the service's client: archives down and up, one-line errors, jobs against a stub.
mod serve_client;
