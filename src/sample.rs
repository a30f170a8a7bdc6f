//! The sample data set of the quick start and the benchmarks: documents of
//! about 0.9 KB with nested objects, arrays, unicode (accents, CJK, RTL,
//! emoji), dates, routing-friendly ids and integers above 2^53, generated
//! from a seed so that a run can be repeated exactly. `esark-seed` loads
//! them into a cluster; `benches/hot_path.rs` feeds them to the hot path.

const WORDS: &[&str] = &[
    "acier",
    "bleu",
    "cámara",
    "données",
    "东京",
    "красный",
    "ハンマー",
    "🚀",
    "lumière",
    "ζήτα",
    "widget",
    "gadget",
    "sprocket",
    "נייר",
    "café",
    "naïve",
    "straße",
    "smørrebrød",
    "पुस्तक",
    "ok",
];

/// One document of about 0.9 KB, written by hand so that its bytes (and
/// the key order) are exactly what the server stores.
pub fn document(rng: &mut fastrand::Rng, k: u64) -> String {
    let word = |rng: &mut fastrand::Rng| WORDS[rng.usize(..WORDS.len())];
    let mut description = String::new();
    while description.len() < 420 {
        description.push_str(word(rng));
        description.push(' ');
    }
    let tags: Vec<String> = (0..rng.usize(1..5))
        .map(|_| {
            format!(
                "\"{}\"",
                ["red", "green", "blue", "sale", "new"][rng.usize(..5)]
            )
        })
        .collect();
    let variants: Vec<String> = (0..rng.usize(1..4))
        .map(|v| {
            format!(
                "{{\"color\":\"{}\",\"qty\":{}}}",
                word(rng),
                rng.u32(..1000) + v as u32
            )
        })
        .collect();
    // Integers above 2^53 (9007199254740992), near 2^63 and negative.
    let big = 9_007_199_254_740_993u64 + rng.u64(..(1 << 62));
    format!(
        concat!(
            "{{\"name\":\"{} {} {}\",\"sku\":\"SKU-{:08}\",\"price\":{}.{:02},\"stock\":{},",
            "\"big\":{},\"neg\":-{},\"max\":9223372036854775807,",
            "\"created\":\"2026-{:02}-{:02}T{:02}:{:02}:00Z\",\"tags\":[{}],",
            "\"vendor\":{{\"name\":\"{}\",\"country\":\"{}\",\"address\":{{\"city\":\"{}\",\"zip\":\"{:05}\"}}}},",
            "\"variants\":[{}],\"description\":\"{}\",\"active\":{},\"ratio\":{}.{:03}}}"
        ),
        word(rng), word(rng), k,
        k, rng.u32(1..999), rng.u32(..100), rng.u32(..10_000),
        big, big / 3,
        rng.u32(1..13), rng.u32(1..29), rng.u32(..24), rng.u32(..60),
        tags.join(","),
        word(rng), ["FR", "JP", "DE", "US", "BR"][rng.usize(..5)], word(rng), rng.u32(..100_000),
        variants.join(","), description.trim_end(), rng.bool(), rng.u32(..10), rng.u32(..1000),
    )
}
