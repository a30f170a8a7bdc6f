//! How many documents a page asks for: `--page-size`, or fewer so that a
//! page weighs about [`PAGE_BYTES`]. Before the first page the weight is
//! estimated from the index's bytes on disk per document
//! ([`from_disk`]); a point-in-time reader, which may ask for any size on
//! every page, then sizes each page by the one before ([`after_page`]).
//! A scroll keeps the size it was opened with.

/// The bytes a page of hits is let to weigh, about. At most `--readers`
/// slices read at once, each with a page being read, one in the channel
/// and the pages being written, so a dump holds some ten pages (see
/// [`crate::dump::pipeline`]): 4 MiB pages keep it under 64 MiB.
/// Documents of up to 1 KiB on disk still come 2,000 to a page, the
/// default; an index of 100 KiB documents is read 20 at a time, not in
/// 200 MB pages.
pub const PAGE_BYTES: u64 = 4 << 20;

/// No page asks for fewer documents: below this the requests, not the
/// bytes, would be the cost.
pub const MIN_PAGE_DOCS: usize = 10;

/// How much bigger a hit in a search answer is than its document on disk:
/// `_source` as JSON, not compressed, plus `_index`, `_id`, `sort` (disk
/// sizes of real indices run from a third to twice the JSON).
const HIT_OVER_DISK: u64 = 2;

/// Documents per page for an index of `doc_bytes` bytes on disk per
/// document (`None`: unknown): `page_size`, or fewer so that a page
/// weighs about [`PAGE_BYTES`]; never fewer than [`MIN_PAGE_DOCS`].
pub fn from_disk(page_size: usize, doc_bytes: Option<u64>) -> usize {
    match doc_bytes.filter(|b| *b > 0) {
        Some(per_doc) => fit(page_size, per_doc.saturating_mul(HIT_OVER_DISK)),
        None => page_size,
    }
}

/// Documents to ask for after a page of `docs` hits in `bytes` bytes:
/// as many as weigh about [`PAGE_BYTES`] at that page's bytes per hit, at
/// most `max` (the size the reader was given), never fewer than
/// [`MIN_PAGE_DOCS`].
pub fn after_page(max: usize, bytes: usize, docs: u64) -> usize {
    if docs == 0 {
        return max;
    }
    fit(max, (bytes as u64 / docs).max(1))
}

fn fit(max: usize, per_hit: u64) -> usize {
    let fit = usize::try_from(PAGE_BYTES / per_hit.max(1)).unwrap_or(usize::MAX);
    max.min(fit.max(MIN_PAGE_DOCS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_weigh_a_few_mebibytes_at_most() {
        // Small documents: the page size asked for.
        assert_eq!(from_disk(2000, Some(500)), 2000);
        assert_eq!(from_disk(2000, Some(1024)), 2000);
        assert_eq!(from_disk(300, Some(100)), 300);
        // 60 KB and 100 KiB documents: 4 MiB over twice their size.
        assert_eq!(from_disk(2000, Some(60_000)), 34);
        assert_eq!(from_disk(2000, Some(100 << 10)), 20);
        // Huge ones: never fewer than 10.
        assert_eq!(from_disk(2000, Some(50 << 20)), 10);
        // Unknown or empty: as asked.
        assert_eq!(from_disk(2000, None), 2000);
        assert_eq!(from_disk(2000, Some(0)), 2000);
    }

    #[test]
    fn a_heavy_page_makes_the_next_one_smaller_and_a_light_one_bigger() {
        // 400 hits in 40 MB: 100 KB a hit, 41 fit in 4 MiB.
        assert_eq!(after_page(400, 40_000_000, 400), 41);
        // Then 41 hits of 1 KB: back up, never past the size given.
        assert_eq!(after_page(400, 41_000, 41), 400);
        // Huge hits: never fewer than 10; an empty page changes nothing.
        assert_eq!(after_page(400, 500_000_000, 10), 10);
        assert_eq!(after_page(400, 0, 0), 400);
    }
}
