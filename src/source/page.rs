//! One answer of a search, scroll or point-in-time request, encoded as
//! archive lines ([`crate::archive::line`]) while borrowing from the
//! response bytes.

use super::scan::HitSpans;
use super::ReadError;
use crate::archive::line::push_line;
use crate::cluster::model::search::{SearchResponse, Shards};

/// One page of documents, already encoded as archive lines.
#[derive(Debug, Default, Clone)]
pub struct Page {
    pub lines: Vec<u8>,
    pub docs: u64,
    /// The sort values of the last hit (raw JSON): where a point-in-time
    /// reader continues with `search_after`.
    pub cursor: Option<String>,
    /// The point in time the page was read in, if any.
    pub pit_id: Option<String>,
    /// How many documents the search matched, when the server said it
    /// exactly (`hits.total`, relation `eq`): not to be trusted above
    /// servers' caps (`crate::source::scroll::TRUSTED_TOTAL_BELOW`).
    pub exact_total: Option<u64>,
}

impl Page {
    /// Drops the first `n` documents (already written before a resume).
    pub fn skip(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        let cut = memchr::memchr_iter(b'\n', &self.lines)
            .nth(n as usize - 1)
            .map_or(self.lines.len(), |i| i + 1);
        self.lines.drain(..cut);
        self.docs = self.docs.saturating_sub(n);
    }
}

/// A decoded answer: its documents and the context ids it carried.
#[derive(Debug)]
pub struct Decoded {
    pub page: Page,
    pub scroll_id: Option<String>,
    pub pit_id: Option<String>,
}

/// Parses a search, scroll or point-in-time answer and encodes its hits as
/// archive lines. `hits.total` never decides alone that a slice is
/// complete: it is capped by some servers (osmem caps it at 10,000 in a
/// scroll); a scroll reader trusts an exact one below that cap only
/// (`crate::source::scroll`), and otherwise goes on until an empty page. Failed shards or a timed-out flag fail the page: a partial
/// page would be a silent loss.
///
/// The answer is located by [`scan`](super::scan) where it has the usual
/// shape, else parsed with serde; both give the same spans.
pub fn encode_page(index: &str, body: &[u8]) -> Result<Decoded, ReadError> {
    // One SIMD UTF-8 check of the whole page, then a parse that borrows
    // from the `str`: `from_slice` would validate every borrowed field again.
    let text = simdutf8::basic::from_utf8(body).map_err(|_| ReadError::BadPage {
        index: index.to_string(),
        reason: "the response is not valid UTF-8".into(),
    })?;
    if let Some(answer) = super::scan::scan(body) {
        let shards = match answer.shards {
            Some(raw) => Some(serde_json::from_slice(raw).map_err(|e| ReadError::BadPage {
                index: index.to_string(),
                reason: format!("_shards: {e}"),
            })?),
            None => None,
        };
        return encode(
            index,
            Envelope {
                shards,
                timed_out: answer.timed_out,
                scroll_id: answer.scroll_id.map(str::to_string),
                pit_id: answer.pit_id.map(str::to_string),
                exact_total: answer.exact_total,
            },
            &answer.hits,
        );
    }
    let response: SearchResponse = serde_json::from_str(text).map_err(|e| ReadError::BadPage {
        index: index.to_string(),
        reason: e.to_string(),
    })?;
    let hits: Vec<HitSpans> = response
        .hits
        .hits
        .iter()
        .map(|h| HitSpans {
            id: h.id.get().as_bytes(),
            routing: h.routing.map(|r| r.get().as_bytes()),
            source: h.source.map(|r| r.get().as_bytes()),
            sort: h.sort.map(|r| r.get().as_bytes()),
        })
        .collect();
    encode(
        index,
        Envelope {
            shards: response.shards,
            timed_out: response.timed_out,
            scroll_id: response.scroll_id.map(|s| s.into_owned()),
            pit_id: response.pit_id.map(|s| s.into_owned()),
            exact_total: response
                .hits
                .total
                .and_then(|t| super::scan::exact_total(t.get().as_bytes())),
        },
        &hits,
    )
}

/// What an answer says besides its hits.
struct Envelope {
    shards: Option<Shards>,
    timed_out: bool,
    scroll_id: Option<String>,
    pit_id: Option<String>,
    exact_total: Option<u64>,
}

fn encode(index: &str, envelope: Envelope, hits: &[HitSpans]) -> Result<Decoded, ReadError> {
    if let Some(shards) = &envelope.shards {
        if shards.failed > 0 {
            let reason = shards
                .failures
                .as_ref()
                .and_then(|f| f.get(0))
                .and_then(|f| f.get("reason"))
                .map(|r| {
                    r.get("reason")
                        .and_then(|s| s.as_str())
                        .map(str::to_string)
                        .unwrap_or_else(|| r.to_string())
                })
                .unwrap_or_else(|| "no reason given".into());
            return Err(ReadError::ShardFailures {
                index: index.to_string(),
                failed: shards.failed,
                total: shards.total,
                reason,
            });
        }
    }
    if envelope.timed_out {
        return Err(ReadError::TimedOut {
            index: index.to_string(),
        });
    }
    let total_len: usize = hits
        .iter()
        .map(|h| h.source.map_or(0, <[u8]>::len) + h.id.len() + 48)
        .sum();
    let mut page = Page {
        lines: Vec::with_capacity(total_len),
        docs: 0,
        cursor: None,
        pit_id: None,
        exact_total: envelope.exact_total,
    };
    for hit in hits {
        let source = hit.source.ok_or_else(|| ReadError::MissingSource {
            index: index.to_string(),
            id: String::from_utf8_lossy(hit.id).into_owned(),
        })?;
        push_line(&mut page.lines, hit.id, hit.routing, source);
        page.docs += 1;
    }
    page.cursor = hits
        .last()
        .and_then(|h| h.sort)
        .map(|s| String::from_utf8_lossy(s).into_owned());
    Ok(Decoded {
        page,
        scroll_id: envelope.scroll_id,
        pit_id: envelope.pit_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_hits_and_ignores_capped_totals() {
        let body = r#"{"_scroll_id":"s1","_shards":{"failed":0,"successful":1,"total":1},"hits":{"total":{"value":10000,"relation":"eq"},"hits":[{"_id":"a","_source":{"x":18446744073709551616}},{"_id":"b","_routing":"r","_source":{"y":"é"}}]},"timed_out":false}"#;
        let Decoded {
            page, scroll_id, ..
        } = encode_page("i", body.as_bytes()).unwrap();
        assert_eq!(scroll_id.as_deref(), Some("s1"));
        assert_eq!(page.docs, 2);
        assert_eq!(
            String::from_utf8(page.lines).unwrap(),
            "{\"_id\":\"a\",\"_source\":{\"x\":18446744073709551616}}\n{\"_id\":\"b\",\"_routing\":\"r\",\"_source\":{\"y\":\"é\"}}\n"
        );
    }

    #[test]
    fn pit_pages_carry_the_cursor_and_skip_drops_leading_documents() {
        let body = br#"{"pit_id":"p2","hits":{"hits":[{"_id":"a","_source":{},"sort":[1]},{"_id":"b","_source":{},"sort":[9223372036854775807]},{"_id":"c","_source":{"x":1},"sort":[18446744073709551615]}]}}"#;
        let Decoded {
            mut page, pit_id, ..
        } = encode_page("i", body).unwrap();
        assert_eq!(pit_id.as_deref(), Some("p2"));
        assert_eq!(page.cursor.as_deref(), Some("[18446744073709551615]"));
        page.skip(2);
        assert_eq!(page.docs, 1);
        assert_eq!(page.lines, b"{\"_id\":\"c\",\"_source\":{\"x\":1}}\n");
        page.skip(5);
        assert_eq!((page.docs, page.lines.len()), (0, 0));
    }

    #[test]
    fn shard_failures_fail_the_page() {
        let body = br#"{"_scroll_id":"s1","_shards":{"failed":1,"successful":1,"total":2,"failures":[{"shard":1,"reason":{"type":"x","reason":"node left"}}]},"hits":{"hits":[]}}"#;
        match encode_page("i", body) {
            Err(ReadError::ShardFailures {
                failed: 1,
                total: 2,
                reason,
                ..
            }) => {
                assert_eq!(reason, "node left")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timed_out_and_missing_source_fail() {
        let t = br#"{"_scroll_id":"s","timed_out":true,"hits":{"hits":[]}}"#;
        assert!(matches!(
            encode_page("i", t),
            Err(ReadError::TimedOut { .. })
        ));
        let m = br#"{"_scroll_id":"s","hits":{"hits":[{"_id":"a"}]}}"#;
        assert!(matches!(
            encode_page("i", m),
            Err(ReadError::MissingSource { .. })
        ));
    }
}
