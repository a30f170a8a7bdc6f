//! A stream of `esark dump --output -` saved to a file (`> FILE`, maybe
//! compressed afterwards), restored with `--input FILE`: one index, named
//! by the header (or `--index`), whose document lines are archive lines.
//!
//! Unlike a pipe, a file can be read twice: planning reads it whole, so a
//! missing or wrong trailer (the dump did not finish) refuses the restore
//! before the target is touched. The format is described in
//! [`crate::stream`].

use std::path::Path;

use super::lines::open_decoded;
use super::{
    elasticdump, empty_meta, ConvertError, ForeignError, ForeignFile, ForeignIndex, LineFormat,
};
use crate::stream::{is_marker, StreamReader};

/// Reads the whole file: its header, every document (counted) and the
/// trailer that must count them.
pub(crate) async fn read_file(path: &Path) -> Result<Vec<ForeignIndex>, ForeignError> {
    let bad = |e: crate::stream::StreamError| ForeignError::BadFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut stream = StreamReader::open(open_decoded(path).await?)
        .await
        .map_err(bad)?;
    let mut buf = Vec::new();
    let mut docs = 0;
    while stream.next_doc(&mut buf).await.map_err(bad)? {
        docs += 1;
    }
    Ok(vec![ForeignIndex {
        name: stream.header().index.clone(),
        docs,
        meta: empty_meta(),
        files: vec![ForeignFile {
            path: path.to_path_buf(),
            format: LineFormat::Stream,
            only_index: None,
            docs,
            max_line: crate::source::archive::DEFAULT_MAX_LINE,
        }],
    }])
}

/// Appends the archive line of one document line to `out`; `false` for
/// the header and the trailer (checked by [`read_file`]).
pub(crate) fn convert_line(line: &[u8], out: &mut Vec<u8>) -> Result<bool, ConvertError> {
    if is_marker(line) {
        return Ok(false);
    }
    elasticdump::convert_hit(line, out)?;
    Ok(true)
}
