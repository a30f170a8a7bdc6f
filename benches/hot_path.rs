//! Micro-benchmarks of the per-document hot path, one stage at a time:
//!
//! - `dump/encode_page`: a 2000-hit scroll answer -> archive lines
//!   (`esark::source::page::encode_page`).
//! - `dump/zstd3`: those lines -> zstd level 3, as the chunk writer does it
//!   (async-compression's tokio `ZstdEncoder`, `Level::Precise(3)`).
//! - `restore/bulk_builder`: archive lines -> `_bulk` bodies
//!   (`esark::sink::bulk::BulkBuilder`, 10 MiB / 5000 documents, as
//!   `esark restore`'s defaults).
//!
//! Throughput is reported in documents and in input bytes. The documents
//! look like esark-seed's (~0.9 KB: nested objects, arrays, unicode, dates,
//! integers above 2^53), generated from a fixed seed.
//!
//! `cargo bench --bench hot_path` (add `-- --quick` for a short run).

use std::hint::black_box;

use async_compression::tokio::write::ZstdEncoder;
use async_compression::Level;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use esark::sink::bulk::{BulkBuilder, BulkOp};
use esark::source::page::encode_page;
use tokio::io::AsyncWriteExt;

const HITS: usize = 2000;

use esark::sample::document;

/// A scroll answer as OpenSearch 2.x sends it: `hits.total` capped,
/// `_score: null` and a `sort` value per hit (`sort: ["_doc"]`), `_routing`
/// on one hit in seven.
fn scroll_page(hits: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut body = String::from(concat!(
        r#"{"_scroll_id":"FGluY2x1ZGVfY29udGV4dF91dWlkDnF1ZXJ5VGhlbkZldGNoAhZ0ZXN0LXNjcm9sbC1pZC0wMDAwMRYAAAAAAAAAARZhYmNkZWZnaGlqa2xtbm9w","#,
        r#""took":12,"timed_out":false,"_shards":{"total":2,"successful":2,"skipped":0,"failed":0},"#,
        r#""hits":{"total":{"value":10000,"relation":"gte"},"max_score":null,"hits":["#
    ));
    for k in 0..hits as u64 {
        if k > 0 {
            body.push(',');
        }
        let routing = if k % 7 == 0 {
            r#","_routing":"eu""#
        } else {
            ""
        };
        body.push_str(&format!(
            r#"{{"_index":"products","_id":"{k:08}","_score":null{routing},"_source":{},"sort":[{k}]}}"#,
            document(&mut rng, k)
        ));
    }
    body.push_str("]}}");
    body.into_bytes()
}

fn zstd3(rt: &tokio::runtime::Runtime, lines: &[u8]) -> Vec<u8> {
    rt.block_on(async {
        let mut encoder =
            ZstdEncoder::with_quality(Vec::with_capacity(lines.len() / 4), Level::Precise(3));
        encoder.write_all(lines).await.expect("writing to a Vec");
        encoder.shutdown().await.expect("finishing the frame");
        encoder.into_inner()
    })
}

fn bulk(lines: &[u8]) -> (usize, usize) {
    let mut builder = BulkBuilder::new("products", BulkOp::Index, 10 << 20, 5000);
    let (mut requests, mut bytes) = (0, 0);
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if let Some(r) = builder.push_line(line).expect("a valid archive line") {
            requests += 1;
            bytes += r.bytes();
        }
    }
    if let Some(r) = builder.finish() {
        requests += 1;
        bytes += r.bytes();
    }
    (requests, bytes)
}

fn benches(c: &mut Criterion) {
    let page = scroll_page(HITS);
    let encoded = encode_page("products", &page).expect("a valid page").page;
    assert_eq!(encoded.docs, HITS as u64);
    let lines = encoded.lines;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let compressed = zstd3(&rt, &lines);
    let (requests, bulk_bytes) = bulk(&lines);
    eprintln!(
        "input: scroll page {} B ({} hits); archive lines {} B; zstd-3 {} B ({:.1}x); bulk {} request(s), {} B",
        page.len(),
        HITS,
        lines.len(),
        compressed.len(),
        lines.len() as f64 / compressed.len() as f64,
        requests,
        bulk_bytes
    );

    let mut dump = c.benchmark_group("dump");
    dump.throughput(Throughput::ElementsAndBytes {
        elements: HITS as u64,
        bytes: page.len() as u64,
    });
    dump.bench_function("encode_page", |b| {
        b.iter(|| encode_page(black_box("products"), black_box(&page)).expect("a valid page"))
    });
    dump.throughput(Throughput::ElementsAndBytes {
        elements: HITS as u64,
        bytes: lines.len() as u64,
    });
    dump.bench_function("zstd3", |b| b.iter(|| zstd3(&rt, black_box(&lines))));
    dump.finish();

    let mut restore = c.benchmark_group("restore");
    restore.throughput(Throughput::ElementsAndBytes {
        elements: HITS as u64,
        bytes: lines.len() as u64,
    });
    restore.bench_function("bulk_builder", |b| b.iter(|| bulk(black_box(&lines))));
    restore.finish();
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
