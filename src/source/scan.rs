//! A scanner of search answers (scroll and point-in-time pages): locates
//! what a dump keeps of each hit (`_id`, `_routing`, `_source`, `sort`)
//! and of the answer (`_scroll_id`, `pit_id`, `_shards`, `timed_out`) as
//! byte spans of the response, without building values.
//!
//! Parsing the answer with serde (`RawValue` fields) validated every byte
//! of every `_source` on the way: 19 % of a dump's client CPU in a profile
//! of 100,000 documents, more than everything but compression. The scanner
//! only matches brackets and skips strings; objects and arrays (the
//! `_source` of each hit) 64 bytes at a time, with SSE2 bit masks
//! ([`skip_nested`]).
//!
//! It is a fast path, not a parser: it accepts the shape servers send
//! (unescaped keys, the fields where the search API puts them) and answers
//! `None` for anything else, and the caller then parses the answer with
//! serde ([`crate::cluster::model::search`]), which handles every valid
//! shape and says precisely what is wrong with an invalid one. What it
//! does not check is the inside of a `_source` (a server's document is
//! copied as the server sent it, as before); the whole answer is still
//! checked to be UTF-8 first.

/// What a dump keeps of an answer, borrowed from it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer<'a> {
    /// The text of `_scroll_id` (it has no escapes, or the scan fails).
    pub scroll_id: Option<&'a str>,
    /// The text of `pit_id`, likewise.
    pub pit_id: Option<&'a str>,
    /// The raw JSON of `_shards`, for serde: it is small.
    pub shards: Option<&'a [u8]>,
    pub timed_out: bool,
    /// `hits.total` when the server says it is exact: a bare number, or
    /// `{"value": N, "relation": "eq"}`.
    pub exact_total: Option<u64>,
    pub hits: Vec<HitSpans<'a>>,
}

/// One hit: the exact JSON text of each field the server sent; `None` for
/// a field that is missing or `null`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HitSpans<'a> {
    pub id: &'a [u8],
    pub routing: Option<&'a [u8]>,
    pub source: Option<&'a [u8]>,
    pub sort: Option<&'a [u8]>,
}

/// Scans a whole answer; `None` when it is not of the shape the scanner
/// knows (the caller parses it with serde instead).
pub fn scan(body: &[u8]) -> Option<Answer<'_>> {
    let mut s = Scanner { b: body, i: 0 };
    let mut answer = Answer::default();
    let mut saw_hits = false;
    s.object(|s, key| {
        match key {
            b"_scroll_id" => answer.scroll_id = s.plain_string_or_null()?,
            b"pit_id" => answer.pit_id = s.plain_string_or_null()?,
            b"_shards" => {
                let span = s.value()?;
                answer.shards = (span != b"null").then_some(span);
            }
            b"timed_out" => {
                answer.timed_out = match s.value()? {
                    b"true" => true,
                    b"false" | b"null" => false,
                    _ => return None,
                }
            }
            b"hits" => {
                saw_hits = true;
                s.object(|s, key| match key {
                    b"hits" => s.array(|s| {
                        answer.hits.push(s.hit()?);
                        Some(())
                    }),
                    b"total" => {
                        answer.exact_total = exact_total(s.value()?);
                        Some(())
                    }
                    _ => s.value().map(drop),
                })?;
            }
            _ => {
                s.value()?;
            }
        }
        Some(())
    })?;
    s.ws();
    (saw_hits && s.i == body.len()).then_some(answer)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// Expects `c` after optional whitespace.
    fn byte(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// An object whose keys have no escapes: calls `field` with each key,
    /// positioned before its value, which `field` must consume.
    fn object(
        &mut self,
        mut field: impl FnMut(&mut Scanner<'a>, &'a [u8]) -> Option<()>,
    ) -> Option<()> {
        self.byte(b'{')?;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            let key = self.plain_string()?;
            self.byte(b':')?;
            self.ws();
            field(self, key)?;
            self.ws();
            match self.b.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array: calls `item` positioned before each element, which
    /// `item` must consume.
    fn array(&mut self, mut item: impl FnMut(&mut Scanner<'a>) -> Option<()>) -> Option<()> {
        self.byte(b'[')?;
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            item(self)?;
            self.ws();
            match self.b.get(self.i)? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn hit(&mut self) -> Option<HitSpans<'a>> {
        let mut id = None;
        let mut hit = HitSpans::default();
        self.object(|s, key| {
            let span = s.value()?;
            let present = (span != b"null").then_some(span);
            match key {
                b"_id" => id = Some(span),
                b"_routing" => hit.routing = present,
                b"_source" => hit.source = present,
                b"sort" => hit.sort = present,
                _ => {}
            }
            Some(())
        })?;
        hit.id = id?;
        Some(hit)
    }

    /// A string without escapes, its quotes left out: a key, compared as
    /// bytes.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        let end = skip_string(self.b, start)?;
        let inner = &self.b[start + 1..end - 1];
        if inner.contains(&b'\\') {
            return None;
        }
        self.i = end;
        Some(inner)
    }

    /// A context id: a string without escapes, as text, or `null`.
    fn plain_string_or_null(&mut self) -> Option<Option<&'a str>> {
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            return Some(None);
        }
        // The whole answer was checked to be UTF-8, and a string's quotes
        // are ASCII, so its contents are UTF-8 too; checked again here
        // rather than trusted (two short strings per page).
        std::str::from_utf8(self.plain_string()?).ok().map(Some)
    }

    /// Any value: its exact text.
    fn value(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        let end = match *self.b.get(start)? {
            b'"' => skip_string(self.b, start)?,
            b'{' => skip_nested(self.b, start, b'{', b'}')?,
            b'[' => skip_nested(self.b, start, b'[', b']')?,
            _ => {
                let len = self.b[start..]
                    .iter()
                    .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(self.b.len() - start);
                if len == 0 {
                    return None;
                }
                start + len
            }
        };
        self.i = end;
        Some(&self.b[start..end])
    }
}

/// The exact number a `hits.total` says: a bare number (Elasticsearch 6),
/// or an object whose `relation` is `eq`; `None` for a lower bound (`gte`)
/// or anything else.
pub fn exact_total(total: &[u8]) -> Option<u64> {
    if total.first()?.is_ascii_digit() {
        return std::str::from_utf8(total).ok()?.parse().ok();
    }
    #[derive(serde::Deserialize)]
    struct Total {
        value: u64,
        relation: String,
    }
    let t: Total = serde_json::from_slice(total).ok()?;
    (t.relation == "eq").then_some(t.value)
}

/// The end (one past the closing quote) of the string opening at `i`.
///
/// A byte loop: most strings of a document are a few bytes long, and a
/// `memchr` call per string cost as much as it saved (`dump/scan_page` of
/// benches/hot_path.rs, 1000 hits: 0.58x serde's parse time with these
/// loops, 0.61x with `memchr2`/`memchr3`, measured side by side).
#[inline]
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match *b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The end (one past the closing bracket) of the object or array opening
/// at `i`. In valid JSON the brackets of one kind balance whatever the
/// other kind does, so only `open`, `close` and strings matter.
///
/// Whole 64-byte blocks are scanned a block at a time ([`Blocks`]): the
/// positions of quotes, backslashes and the two brackets as bit masks,
/// then which bytes are escaped and which lie inside strings by bit
/// arithmetic (the method of simdjson's first stage), and a block whose
/// closing brackets cannot end the value is passed over by counting bits.
/// The last, partial block goes through [`skip_nested_bytes`], the byte
/// loop this replaced, which also defines the result: the two agree on
/// every valid JSON value (`block_scan_agrees_with_the_byte_loop`).
/// `_source` spans are most of an answer: the byte loop was 20 % of a
/// dump's client CPU samples (perf, the benchmark's 100,000 documents),
/// 684 M instructions under callgrind; the block scan takes 189 M, 9 % of
/// the samples. `dump/scan_page` of benches/hot_path.rs (1000 hits): the
/// scan takes 0.17x serde's parse time (267 µs vs 1.54 ms), 0.58x with the
/// byte loop. With the lz4 context kept per slice
/// (`crate::sink::chunk::Lz4PageCompressor`), the dump's client CPU went
/// from 0.32-0.35 s to 0.24-0.28 s (user + system, five alternating runs
/// each against one osmem).
fn skip_nested(b: &[u8], i: usize, open: u8, close: u8) -> Option<usize> {
    let mut blocks = Blocks {
        open,
        close,
        depth: 0,
        escape_carry: 0,
        in_string: 0,
    };
    let mut at = i;
    while let Some(block) = b.get(at..at + 64) {
        let block: &[u8; 64] = block.try_into().ok()?;
        if let Some(offset) = blocks.next(block) {
            return Some(at + offset + 1);
        }
        at += 64;
    }
    // The rest, shorter than a block, byte by byte from the state the
    // blocks left.
    let mut j = at;
    if blocks.escape_carry != 0 {
        j += 1;
    }
    if blocks.in_string != 0 {
        j = skip_string_from(b, j)?;
    }
    skip_nested_bytes(b, j, open, close, blocks.depth)
}

/// The state of a block-wise scan of one object or array.
struct Blocks {
    open: u8,
    close: u8,
    /// Brackets opened and not yet closed.
    depth: usize,
    /// 1 when the block before ended in an odd run of backslashes: the
    /// first byte of this one is escaped.
    escape_carry: u64,
    /// All ones when the block before ended inside a string.
    in_string: u64,
}

impl Blocks {
    /// Scans one block: the offset of the bracket that closes the value,
    /// if it is in this block.
    #[inline]
    fn next(&mut self, block: &[u8; 64]) -> Option<usize> {
        let [quotes, backslashes, opens, closes] =
            byte_masks(block, [b'"', b'\\', self.open, self.close]);
        let escaped = if backslashes == 0 && self.escape_carry == 0 {
            0
        } else {
            escaped_bytes(backslashes, &mut self.escape_carry)
        };
        let quotes = quotes & !escaped;
        // Set from each opening quote up to (not including) its closing
        // quote: a prefix XOR of the quotes, continued from the block
        // before.
        let strings = prefix_xor(quotes) ^ self.in_string;
        self.in_string = 0u64.wrapping_sub(strings >> 63);
        let opens = opens & !strings;
        let closes = closes & !strings;
        if (closes.count_ones() as usize) < self.depth || closes == 0 {
            // Not enough closing brackets to end the value here.
            self.depth = self.depth + opens.count_ones() as usize - closes.count_ones() as usize;
            return None;
        }
        let mut brackets = opens | closes;
        while brackets != 0 {
            let bit = brackets.trailing_zeros() as usize;
            brackets &= brackets - 1;
            if opens & (1 << bit) != 0 {
                self.depth += 1;
            } else {
                // A close before any open is not the shape of a value.
                self.depth = self.depth.checked_sub(1)?;
                if self.depth == 0 {
                    return Some(bit);
                }
            }
        }
        None
    }
}

/// For each of `bytes`, the mask of the positions in `block` that hold it
/// (bit `k` for byte `k`): four 16-byte compares per byte with SSE2, which
/// every x86_64 processor has. (A plain loop over the block was not
/// vectorized by the compiler and took 3.7x the instructions of the byte
/// loop it was to replace, under callgrind.)
#[cfg(target_arch = "x86_64")]
#[inline]
fn byte_masks(block: &[u8; 64], bytes: [u8; 4]) -> [u64; 4] {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of x86_64; each unaligned load reads 16 bytes
    // at offsets 0, 16, 32 and 48 of the 64-byte `block`.
    unsafe {
        let lanes =
            [0, 16, 32, 48].map(|at| _mm_loadu_si128(block.as_ptr().add(at).cast::<__m128i>()));
        bytes.map(|byte| {
            let needle = _mm_set1_epi8(byte as i8);
            let mut mask = 0u64;
            for (k, lane) in lanes.iter().enumerate() {
                let hits = _mm_movemask_epi8(_mm_cmpeq_epi8(*lane, needle)) as u32;
                mask |= u64::from(hits) << (16 * k);
            }
            mask
        })
    }
}

/// [`byte_masks`] elsewhere: a plain loop over the block.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn byte_masks(block: &[u8; 64], bytes: [u8; 4]) -> [u64; 4] {
    bytes.map(|byte| {
        block
            .iter()
            .enumerate()
            .fold(0u64, |mask, (k, c)| mask | (u64::from(*c == byte) << k))
    })
}

/// Which bytes of a block are escaped (the byte after an odd run of
/// backslashes), given where its backslashes are; `carry` says whether the
/// first byte is escaped by the block before, and is set for the next.
/// simdjson's branchless method: runs starting on odd and even positions
/// are told apart by adding them to themselves.
#[inline]
fn escaped_bytes(backslashes: u64, carry: &mut u64) -> u64 {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    // An escaped backslash starts no escape.
    let backslashes = backslashes & !*carry;
    let follows_escape = (backslashes << 1) | *carry;
    let odd_starts = backslashes & !EVEN & !follows_escape;
    let (even_starts, overflow) = odd_starts.overflowing_add(backslashes);
    *carry = u64::from(overflow);
    let invert = even_starts << 1;
    (EVEN ^ invert) & follows_escape
}

/// Bit `k` is the XOR of bits `0..=k` of `x`.
#[inline]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// Bytes [`skip_nested_bytes`] stops at: quotes and brackets.
const STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// The end of a string whose opening quote came before `j` (`j` is inside
/// it): one past its closing quote.
#[inline]
fn skip_string_from(b: &[u8], mut j: usize) -> Option<usize> {
    loop {
        match *b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// [`skip_nested`] byte by byte, from `j` with `depth` brackets open
/// (0: `j` is the opening bracket).
fn skip_nested_bytes(
    b: &[u8],
    mut j: usize,
    open: u8,
    close: u8,
    mut depth: usize,
) -> Option<usize> {
    loop {
        while !STRUCTURAL[*b.get(j)? as usize] {
            j += 1;
        }
        let c = b[j];
        if c == b'"' {
            j = skip_string(b, j)?;
        } else if c == open {
            depth += 1;
            j += 1;
        } else if c == close {
            depth = depth.checked_sub(1)?;
            j += 1;
            if depth == 0 {
                return Some(j);
            }
        } else {
            j += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_field_of_a_scroll_page() {
        let body = br#"{"_scroll_id":"abc=","took":3,"timed_out":false,"_shards":{"total":2,"successful":2,"skipped":0,"failed":0},"hits":{"total":{"value":10000,"relation":"eq"},"max_score":null,"hits":[{"_index":"t","_id":"a","_score":null,"_routing":"r1","_source":{"s":"}{\"][","n":18446744073709551616,"o":{"a":[1,{"b":[]}]}},"sort":[0]},{"_id":"b\"q","_source":{},"_routing":null}]}}"#;
        let a = scan(body).unwrap();
        assert_eq!(a.scroll_id, Some("abc="));
        assert_eq!(a.exact_total, Some(10000));
        assert!(!a.timed_out);
        assert_eq!(
            a.shards,
            Some(&br#"{"total":2,"successful":2,"skipped":0,"failed":0}"#[..])
        );
        assert_eq!(a.hits.len(), 2);
        assert_eq!(a.hits[0].id, br#""a""#);
        assert_eq!(a.hits[0].routing, Some(&br#""r1""#[..]));
        assert_eq!(
            a.hits[0].source,
            Some(&br#"{"s":"}{\"][","n":18446744073709551616,"o":{"a":[1,{"b":[]}]}}"#[..])
        );
        assert_eq!(a.hits[0].sort, Some(&b"[0]"[..]));
        assert_eq!(a.hits[1].id, br#""b\"q""#);
        assert_eq!(
            (a.hits[1].routing, a.hits[1].source),
            (None, Some(&b"{}"[..]))
        );
    }

    #[test]
    fn whitespace_pit_ids_and_empty_pages() {
        let body =
            b" {\n \"pit_id\" : \"p1\" ,\"timed_out\":true, \"hits\" : { \"hits\" : [ ] } }\n";
        let a = scan(body).unwrap();
        assert_eq!((a.pit_id, a.timed_out, a.hits.len()), (Some("p1"), true, 0));
        assert_eq!(a.exact_total, None);
        for (total, exact) in [
            (r#"17"#, Some(17)),
            (r#"{"relation":"eq","value":3}"#, Some(3)),
            (r#"{"value":3,"relation":"gte"}"#, None),
            (r#"null"#, None),
        ] {
            let body = format!(r#"{{"hits":{{"total":{total},"hits":[]}}}}"#);
            assert_eq!(scan(body.as_bytes()).unwrap().exact_total, exact, "{total}");
        }
        assert_eq!(a.scroll_id, None);
    }

    /// Random valid JSON values (strings with runs of escapes, nesting,
    /// long runs of text, so that every kind of byte falls on every block
    /// boundary), each after a prefix of 0 to 63 bytes: the block scan
    /// ends each where the byte loop does, and both refuse each cut short.
    #[test]
    fn block_scan_agrees_with_the_byte_loop() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        fn string(next: &mut impl FnMut(u64) -> u64, out: &mut Vec<u8>) {
            out.push(b'"');
            for _ in 0..next(90) {
                match next(10) {
                    0 => out.extend(std::iter::repeat_n(b'\\', 2 * next(3) as usize)),
                    1 => out.extend_from_slice(b"\\\""),
                    2 => out.extend_from_slice(b"\\\\\\\"\\n"),
                    3 => out.extend_from_slice(b"{}[]"),
                    4 => out.extend_from_slice("é🚀".as_bytes()),
                    _ => out.push(b'a' + next(26) as u8),
                }
            }
            out.push(b'"');
        }
        fn value(next: &mut impl FnMut(u64) -> u64, out: &mut Vec<u8>, depth: u32) {
            match if depth > 4 { next(3) } else { next(6) } {
                0 => string(next, out),
                1 => out.extend_from_slice(b"-12.5e3"),
                2 => out.extend_from_slice(b"true"),
                3 | 4 => {
                    out.push(b'{');
                    for k in 0..next(6) {
                        if k > 0 {
                            out.push(b',');
                        }
                        string(next, out);
                        out.extend_from_slice(b" : ");
                        value(next, out, depth + 1);
                    }
                    out.push(b'}');
                }
                _ => {
                    out.push(b'[');
                    for k in 0..next(6) {
                        if k > 0 {
                            out.extend_from_slice(b", ");
                        }
                        value(next, out, depth + 1);
                    }
                    out.push(b']');
                }
            }
        }
        let mut checked = 0;
        for round in 0..3000 {
            let mut body = vec![b' '; round % 64];
            let start = body.len();
            let (open, close) = if round % 2 == 0 {
                (b'{', b'}')
            } else {
                (b'[', b']')
            };
            body.push(open);
            for k in 0..next(8) {
                if k > 0 {
                    body.push(b',');
                }
                if open == b'{' {
                    string(&mut next, &mut body);
                    body.push(b':');
                }
                value(&mut next, &mut body, 1);
            }
            body.push(close);
            let end = body.len();
            body.extend_from_slice(b",\"tail\":[1]}");
            let want = skip_nested_bytes(&body, start, open, close, 0);
            assert_eq!(want, Some(end), "{}", String::from_utf8_lossy(&body));
            assert_eq!(
                skip_nested(&body, start, open, close),
                want,
                "{}",
                String::from_utf8_lossy(&body)
            );
            let cut = start + 1 + next((end - start - 1) as u64) as usize;
            assert_eq!(
                skip_nested(&body[..cut], start, open, close),
                None,
                "cut at {cut}"
            );
            checked += end - start;
        }
        assert!(checked > 64 * 3000, "{checked} bytes: too few whole blocks");
    }

    /// Everything the scanner does not know is left to serde: escaped
    /// keys or ids, a missing `hits`, a hit without `_id`, trailing bytes,
    /// truncation anywhere.
    #[test]
    fn unknown_shapes_and_truncations_are_refused() {
        for body in [
            &br#"{"\u005fscroll_id":"a","hits":{"hits":[]}}"#[..],
            br#"{"_scroll_id":"a\/b","hits":{"hits":[]}}"#,
            br#"{"_scroll_id":"a"}"#,
            br#"{"hits":{"hits":[{"_source":{}}]}}"#,
            br#"{"hits":{"hits":[]}} x"#,
            br#"{"hits":{"hits":[]},}"#,
            br#"{"timed_out":"no","hits":{"hits":[]}}"#,
            b"",
            b"[]",
        ] {
            assert_eq!(scan(body), None, "{}", String::from_utf8_lossy(body));
        }
        let whole =
            br#"{"_scroll_id":"s","hits":{"hits":[{"_id":"a","_source":{"x":"y\\","z":[1,2]}}]}}"#;
        assert!(scan(whole).is_some());
        for end in 0..whole.len() {
            assert_eq!(scan(&whole[..end]), None, "cut at {end}");
        }
    }
}
