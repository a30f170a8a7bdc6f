//! Micro-benchmarks of the per-document hot path, one stage at a time:
//!
//! - `dump/encode_page`: a 1000-hit scroll answer (the default page) ->
//!   archive lines (`esark::source::page::encode_page`).
//! - `dump/scan_page`: locating the hits of that answer with
//!   `esark::source::scan` (what `encode_page` does first), next to
//!   `dump/serde_page`, the serde parse it replaced.
//! - `dump/zstd1_frame`: those lines -> one zstd frame at level 1, as the
//!   chunk writer does it (`esark::sink::chunk::PageCompressor`, context
//!   reused), `dump/lz4_frame` one lz4 frame (the default compression),
//!   and `dump/zstd3_frame` the same at zstd level 3.
//! - `dump/zstd3_stream_10_pages`: what esark did before archive format 3,
//!   for comparison: ten pages through one streaming encoder
//!   (async-compression's `ZstdEncoder`, level 3), whose input ring buffer
//!   wraps and sends zstd down its slower external-dictionary path; next to
//!   `dump/zstd1_frame_10_pages`, the same ten pages as frames.
//! - `restore/bulk_builder`: archive lines -> `_bulk` bodies
//!   (`esark::sink::bulk::BulkBuilder`, 5 MiB / 1000 documents, as
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
use esark::sink::chunk::{Lz4PageCompressor, PageCompressor};
use esark::source::page::encode_page;
use tokio::io::AsyncWriteExt;

const HITS: usize = 1000;

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

/// Pages through one streaming encoder, as chunks were written before
/// format 3.
fn zstd3_stream(rt: &tokio::runtime::Runtime, pages: &[Vec<u8>]) -> usize {
    rt.block_on(async {
        let mut encoder = ZstdEncoder::with_quality(Vec::new(), Level::Precise(3));
        for page in pages {
            encoder.write_all(page).await.expect("writing to a Vec");
        }
        encoder.shutdown().await.expect("finishing the frame");
        encoder.into_inner().len()
    })
}

/// Pages as frames, as the chunk writer writes them.
fn frames(compressor: &mut PageCompressor, pages: &[Vec<u8>]) -> usize {
    pages
        .iter()
        .map(|p| compressor.compress(p).expect("compressing").len())
        .sum()
}

fn bulk(lines: &[u8]) -> (usize, usize) {
    let mut builder = BulkBuilder::new("products", BulkOp::Index, 5 << 20, 1000);
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
    // Ten different pages (ids and documents differ), as a slice reads them.
    let pages: Vec<Vec<u8>> = (0..10u64)
        .map(|p| {
            let mut rng = fastrand::Rng::with_seed(p);
            let mut out = Vec::new();
            for k in 0..HITS as u64 {
                out.extend_from_slice(
                    format!(
                        "{{\"_id\":\"{:08}\",\"_source\":{}}}\n",
                        p * HITS as u64 + k,
                        document(&mut rng, k)
                    )
                    .as_bytes(),
                );
            }
            out
        })
        .collect();
    let ten_pages_bytes: usize = pages.iter().map(Vec::len).sum();
    let mut level1 = PageCompressor::new(1).expect("zstd context");
    let mut level3 = PageCompressor::new(3).expect("zstd context");
    let frame1 = level1.compress(&lines).expect("compressing").len();
    let (requests, bulk_bytes) = bulk(&lines);
    eprintln!(
        "input: scroll page {} B ({} hits); archive lines {} B; zstd-1 frame {} B ({:.1}x); bulk {} request(s), {} B",
        page.len(),
        HITS,
        lines.len(),
        frame1,
        lines.len() as f64 / frame1 as f64,
        requests,
        bulk_bytes
    );
    eprintln!(
        "ten pages, {} B: zstd-3 stream {} B, zstd-3 frames {} B, zstd-1 frames {} B",
        ten_pages_bytes,
        zstd3_stream(&rt, &pages),
        frames(&mut level3, &pages),
        frames(&mut level1, &pages)
    );

    let mut dump = c.benchmark_group("dump");
    dump.throughput(Throughput::ElementsAndBytes {
        elements: HITS as u64,
        bytes: page.len() as u64,
    });
    dump.bench_function("encode_page", |b| {
        b.iter(|| encode_page(black_box("products"), black_box(&page)).expect("a valid page"))
    });
    // Locating the hits: the scanner the dump uses, and the serde parse it
    // replaced (still its fallback for unusual answers).
    dump.bench_function("scan_page", |b| {
        b.iter(|| esark::source::scan::scan(black_box(&page)).expect("a known shape"))
    });
    dump.bench_function("serde_page", |b| {
        b.iter(|| {
            serde_json::from_slice::<esark::cluster::model::search::SearchResponse>(black_box(
                &page,
            ))
            .expect("a valid page")
        })
    });
    dump.throughput(Throughput::ElementsAndBytes {
        elements: HITS as u64,
        bytes: lines.len() as u64,
    });
    dump.bench_function("zstd1_frame", |b| {
        b.iter(|| {
            level1
                .compress(black_box(&lines))
                .expect("compressing")
                .len()
        })
    });
    let mut lz4 = Lz4PageCompressor::new(1).expect("an lz4 context");
    dump.bench_function("lz4_frame", |b| {
        b.iter(|| lz4.compress(black_box(&lines)).expect("compressing").len())
    });
    dump.bench_function("zstd3_frame", |b| {
        b.iter(|| {
            level3
                .compress(black_box(&lines))
                .expect("compressing")
                .len()
        })
    });
    dump.throughput(Throughput::ElementsAndBytes {
        elements: 10 * HITS as u64,
        bytes: ten_pages_bytes as u64,
    });
    dump.bench_function("zstd3_stream_10_pages", |b| {
        b.iter(|| zstd3_stream(&rt, black_box(&pages)))
    });
    dump.bench_function("zstd1_frame_10_pages", |b| {
        b.iter(|| frames(&mut level1, black_box(&pages)))
    });
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
