//! The request builder: archive lines -> NDJSON action/source pairs ->
//! [`BulkRequest`]s cut by bytes and by documents.
//!
//! `_source` is never parsed: its raw bytes are copied after the action
//! line (made single-line if needed). Each request keeps the byte range of
//! every pair, so a partial retry re-joins only the documents that failed
//! ([`BulkRequest::subset`]).

use std::ops::Range;

use bytes::Bytes;

use crate::archive::line::{parse_line, push_json_single_line};

/// An archive line the builder cannot turn into a bulk pair.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Not `{"_id":"…","_source":{…}}` (with an optional `_routing`).
    #[error(transparent)]
    MalformedLine(#[from] crate::archive::line::LineError),
}

/// The bulk action used for every document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkOp {
    /// Create or overwrite by id.
    Index,
    /// Create only (data streams accept nothing else).
    Create,
}

/// One `_bulk` request: the body and the byte range of each document's pair.
#[derive(Debug, Clone)]
pub struct BulkRequest {
    body: Bytes,
    spans: Vec<Range<usize>>,
    /// The documents may be on the target already (sent by an interrupted
    /// run): a `create` conflict is then not a reject.
    resend: bool,
    /// Sent with `?refresh=true`: its documents are searchable once it is
    /// answered ([`BulkBuilder::set_refresh`]).
    refresh: bool,
}

/// What of a `_bulk` answer is read (`crate::cluster::model::bulk`):
/// the items' statuses and errors, and `errors`; `error` and `status` keep
/// a whole refused request's reason on a server that would filter it too
/// (Elasticsearch and OpenSearch do not). Without it osmem answers some
/// 150 bytes per item (`_index`, `_id`, `_version`, `result`, `_shards`,
/// `_seq_no`, `_primary_term`, `status`), with it 25.
pub const ANSWER_FILTER: &str = "errors,items.*.status,items.*.error,error,status";

const PATH: &str = "_bulk?filter_path=errors,items.*.status,items.*.error,error,status";
const REFRESHING_PATH: &str =
    "_bulk?refresh=true&filter_path=errors,items.*.status,items.*.error,error,status";

impl BulkRequest {
    pub fn docs(&self) -> usize {
        self.spans.len()
    }

    pub fn bytes(&self) -> usize {
        self.body.len()
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Whether these documents may be on the target already, from a run
    /// that was interrupted ([`BulkBuilder::set_resend`]).
    pub fn is_resend(&self) -> bool {
        self.resend
    }

    /// The request path: `_bulk`, asking for no more of the answer than
    /// each item's status and error ([`ANSWER_FILTER`]), with
    /// `refresh=true` when the request refreshes what it wrote.
    pub fn path(&self) -> &'static str {
        match self.refresh {
            true => REFRESHING_PATH,
            false => PATH,
        }
    }

    /// The NDJSON pair of document `i`.
    pub fn pair(&self, i: usize) -> &[u8] {
        &self.body[self.spans[i].clone()]
    }

    /// A new request of only the documents at `positions`.
    pub fn subset(&self, positions: &[usize]) -> BulkRequest {
        let mut body = Vec::with_capacity(positions.iter().map(|&p| self.spans[p].len()).sum());
        let mut spans = Vec::with_capacity(positions.len());
        for &p in positions {
            let start = body.len();
            body.extend_from_slice(self.pair(p));
            spans.push(start..body.len());
        }
        BulkRequest {
            body: Bytes::from(body),
            spans,
            resend: self.resend,
            refresh: self.refresh,
        }
    }
}

/// Builds requests for one target index from archive lines.
pub struct BulkBuilder {
    /// `{"index":{"_index":"<name>"` (or create), computed once.
    action_head: Vec<u8>,
    max_bytes: usize,
    max_docs: usize,
    body: Vec<u8>,
    spans: Vec<Range<usize>>,
    resend: bool,
    refresh: bool,
}

impl BulkBuilder {
    pub fn new(index: &str, op: BulkOp, max_bytes: usize, max_docs: usize) -> BulkBuilder {
        let op = match op {
            BulkOp::Index => "index",
            BulkOp::Create => "create",
        };
        let name = serde_json::to_string(index).expect("a string serializes");
        BulkBuilder {
            action_head: format!("{{\"{op}\":{{\"_index\":{name}").into_bytes(),
            max_bytes: max_bytes.max(1),
            max_docs: max_docs.max(1),
            body: Vec::new(),
            spans: Vec::new(),
            resend: false,
            refresh: false,
        }
    }

    /// Marks the requests taken from now on as resends (`true`) of
    /// documents an earlier run may have delivered, or not.
    pub fn set_resend(&mut self, resend: bool) {
        self.resend = resend;
    }

    /// Makes every request (and every retry of part of one) refresh what it
    /// wrote (`?refresh=true`): for an index one request holds, this saves
    /// the `_refresh` after the load, one of its three requests
    /// (benches/RESULTS.md, many small indices).
    pub fn set_refresh(&mut self, refresh: bool) {
        self.refresh = refresh;
    }

    /// Adds one archive line (without its newline). Returns a request when
    /// this line filled one.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Option<BulkRequest>, PushError> {
        let parsed = parse_line(line)?;
        if self.body.capacity() == 0 {
            self.body.reserve(self.max_bytes.min(64 << 20) + 64 * 1024);
        }
        let start = self.body.len();
        self.body.extend_from_slice(&self.action_head);
        self.body.extend_from_slice(b",\"_id\":");
        self.body.extend_from_slice(parsed.id);
        if let Some(r) = parsed.routing {
            self.body.extend_from_slice(b",\"routing\":");
            self.body.extend_from_slice(r);
        }
        self.body.extend_from_slice(b"}}\n");
        push_json_single_line(&mut self.body, parsed.source);
        self.body.push(b'\n');
        self.spans.push(start..self.body.len());
        if self.body.len() >= self.max_bytes || self.spans.len() >= self.max_docs {
            Ok(self.take())
        } else {
            Ok(None)
        }
    }

    /// The last, partly filled request.
    pub fn finish(mut self) -> Option<BulkRequest> {
        self.take()
    }

    /// The partly filled request, now (at a chunk boundary).
    pub fn take(&mut self) -> Option<BulkRequest> {
        if self.spans.is_empty() {
            return None;
        }
        Some(BulkRequest {
            body: Bytes::from(std::mem::take(&mut self.body)),
            spans: std::mem::take(&mut self.spans),
            resend: self.resend,
            refresh: self.refresh,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refreshing_request_and_its_retries_say_so_in_their_path() {
        let mut b = BulkBuilder::new("i", BulkOp::Index, 1 << 20, 2);
        assert!(b
            .push_line(br#"{"_id":"1","_source":{}}"#)
            .unwrap()
            .is_none());
        let plain = b.take().unwrap();
        assert_eq!(plain.path(), format!("_bulk?filter_path={ANSWER_FILTER}"));
        b.set_refresh(true);
        b.push_line(br#"{"_id":"2","_source":{}}"#).unwrap();
        let req = b
            .push_line(br#"{"_id":"3","_source":{}}"#)
            .unwrap()
            .unwrap();
        let refreshing = format!("_bulk?refresh=true&filter_path={ANSWER_FILTER}");
        assert_eq!(req.path(), refreshing);
        // What is sent again of it (items refused with 429) refreshes too.
        assert_eq!(req.subset(&[1]).path(), refreshing);
        assert_eq!(plain.subset(&[0]).path(), plain.path());
    }

    #[test]
    fn builder_copies_sources_and_cuts_by_docs_and_bytes() {
        let mut b = BulkBuilder::new("my\"idx", BulkOp::Index, 1 << 20, 2);
        assert!(b
            .push_line(
                br#"{"_id":"1","_routing":"r","_source":{"big":9223372036854775807,"z":1,"a":2}}"#
            )
            .unwrap()
            .is_none());
        let req = b
            .push_line(br#"{"_id":"2","_source":{}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(req.docs(), 2);
        assert_eq!(
            std::str::from_utf8(req.body()).unwrap(),
            concat!(
                r#"{"index":{"_index":"my\"idx","_id":"1","routing":"r"}}"#,
                "\n",
                r#"{"big":9223372036854775807,"z":1,"a":2}"#,
                "\n",
                r#"{"index":{"_index":"my\"idx","_id":"2"}}"#,
                "\n",
                "{}\n"
            )
        );
        let sub = req.subset(&[1]);
        assert_eq!(
            std::str::from_utf8(sub.body()).unwrap(),
            "{\"index\":{\"_index\":\"my\\\"idx\",\"_id\":\"2\"}}\n{}\n"
        );
        assert!(b.finish().is_none());

        let mut small = BulkBuilder::new("i", BulkOp::Create, 10, 1000);
        let r = small
            .push_line(br#"{"_id":"1","_source":{"a":1}}"#)
            .unwrap()
            .unwrap();
        assert!(std::str::from_utf8(r.body())
            .unwrap()
            .starts_with("{\"create\":"));
        assert!(matches!(
            small.push_line(b"{oops"),
            Err(PushError::MalformedLine(_))
        ));
    }

    #[test]
    fn a_resend_mark_follows_the_requests_and_their_subsets() {
        let mut b = BulkBuilder::new("i", BulkOp::Create, 1 << 20, 2);
        b.set_resend(true);
        b.push_line(br#"{"_id":"1","_source":{}}"#).unwrap();
        let req = b
            .push_line(br#"{"_id":"2","_source":{}}"#)
            .unwrap()
            .unwrap();
        assert!(req.is_resend() && req.subset(&[0]).is_resend());
        b.set_resend(false);
        b.push_line(br#"{"_id":"3","_source":{}}"#).unwrap();
        assert!(!b.take().unwrap().is_resend());
    }
}
