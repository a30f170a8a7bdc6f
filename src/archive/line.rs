//! The data line of an archive: `{"_id":…,"_routing":…,"_source":…}` and a
//! newline, built by copying the raw JSON of each field from the server's
//! answer. Nothing is parsed into a value, so big integers and key order
//! survive exactly and a line costs one `memcpy` per field.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The fields of a data line, as raw JSON slices of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineParts<'a> {
    /// A JSON string, quotes included.
    pub id: &'a [u8],
    /// A JSON string, when present.
    pub routing: Option<&'a [u8]>,
    /// A JSON object.
    pub source: &'a [u8],
}

#[derive(Debug, Deserialize)]
struct ArchiveLine<'a> {
    #[serde(rename = "_id", borrow)]
    id: &'a RawValue,
    #[serde(rename = "_routing", default, borrow)]
    routing: Option<&'a RawValue>,
    #[serde(rename = "_source", borrow)]
    source: &'a RawValue,
}

/// What is wrong with a data line.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not JSON, or not an object with `_id` and `_source`.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("\"_id\" is not a string")]
    IdNotString,
    #[error("\"_source\" is not an object")]
    SourceNotObject,
    #[error("\"_routing\" is not a string")]
    RoutingNotString,
}

/// Splits a data line into its fields; `Err` says what is wrong with it.
///
/// Lines as esark writes them (`{"_id":…[,"_routing":…],"_source":{…}}`)
/// are split by locating the two strings and the object's ends, without
/// scanning `_source`: on the restore path that scan would be most of the
/// CPU, and the server parses the document anyway (a broken one comes back
/// as a rejected item). Lines of any other shape are parsed in full.
pub fn parse_line(line: &[u8]) -> Result<LineParts<'_>, LineError> {
    if let Some(parts) = split_fast(line) {
        return Ok(parts);
    }
    let parsed: ArchiveLine = serde_json::from_slice(line)?;
    if !parsed.id.get().starts_with('"') {
        return Err(LineError::IdNotString);
    }
    if !parsed.source.get().starts_with('{') {
        return Err(LineError::SourceNotObject);
    }
    let routing = match parsed.routing {
        Some(r) if r.get() == "null" => None,
        Some(r) if !r.get().starts_with('"') => return Err(LineError::RoutingNotString),
        other => other,
    };
    Ok(LineParts {
        id: parsed.id.get().as_bytes(),
        routing: routing.map(|r| r.get().as_bytes()),
        source: parsed.source.get().as_bytes(),
    })
}

fn split_fast(line: &[u8]) -> Option<LineParts<'_>> {
    let rest = line.strip_prefix(b"{\"_id\":")?;
    let id_len = json_string_len(rest)?;
    let (id, mut rest) = rest.split_at(id_len);
    let mut routing = None;
    if let Some(r) = rest.strip_prefix(b",\"_routing\":") {
        let len = json_string_len(r)?;
        routing = Some(&r[..len]);
        rest = &r[len..];
    }
    let source = rest.strip_prefix(b",\"_source\":")?.strip_suffix(b"}")?;
    (source.first() == Some(&b'{') && source.last() == Some(&b'}')).then_some(LineParts {
        id,
        routing,
        source,
    })
}

/// The length of the JSON string at the start of `s`, quotes included.
fn json_string_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    loop {
        let j = memchr::memchr2(b'"', b'\\', &s[i..])? + i;
        if s[j] == b'"' {
            return Some(j + 1);
        }
        i = j + 2;
        if i > s.len() {
            return None;
        }
    }
}

/// Appends raw JSON, turning raw line breaks into spaces. A raw CR or LF
/// can only be insignificant whitespace in JSON (inside strings they are
/// escaped), but one would break a JSONL or NDJSON line: a document indexed
/// pretty-printed is stored, and returned, with them.
#[inline]
pub fn push_json_single_line(out: &mut Vec<u8>, json: &[u8]) {
    if memchr::memchr2(b'\n', b'\r', json).is_none() {
        out.extend_from_slice(json);
    } else {
        out.extend(
            json.iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
    }
}

/// Appends one data line to `out`. `id` and `routing` are JSON strings as
/// the server sent them (quotes included), `source` a JSON object.
#[inline]
pub fn push_line(out: &mut Vec<u8>, id: &[u8], routing: Option<&[u8]>, source: &[u8]) {
    out.reserve(id.len() + source.len() + 48);
    out.extend_from_slice(b"{\"_id\":");
    out.extend_from_slice(id);
    if let Some(r) = routing {
        out.extend_from_slice(b",\"_routing\":");
        out.extend_from_slice(r);
    }
    out.extend_from_slice(b",\"_source\":");
    push_json_single_line(out, source);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &[u8] {
        s.as_bytes()
    }

    #[test]
    fn pretty_printed_sources_stay_on_one_line() {
        let mut out = Vec::new();
        push_line(
            &mut out,
            raw(r#""1""#),
            None,
            raw("{\n  \"a\": \"x\\ny\"\r\n}"),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"_id\":\"1\",\"_source\":{   \"a\": \"x\\ny\"  }}\n"
        );
    }

    #[test]
    fn parse_line_splits_esark_lines_without_parsing_the_source() {
        let l =
            parse_line(br#"{"_id":"a\"b\\","_routing":"r","_source":{"n":18446744073709551616}}"#)
                .unwrap();
        assert_eq!(l.id, br#""a\"b\\""#);
        assert_eq!(l.routing, Some(&br#""r""#[..]));
        assert_eq!(l.source, br#"{"n":18446744073709551616}"#);
        let l = parse_line(br#"{"_id":"1","_source":{}}"#).unwrap();
        assert_eq!(
            (l.id, l.routing, l.source),
            (&br#""1""#[..], None, &b"{}"[..])
        );
    }

    #[test]
    fn parse_line_accepts_other_key_orders_and_whitespace() {
        let l = parse_line(br#"{ "_source": {"a": 1}, "_routing": null, "_id": "x" }"#).unwrap();
        assert_eq!(
            (l.id, l.routing, l.source),
            (&br#""x""#[..], None, &br#"{"a": 1}"#[..])
        );
    }

    #[test]
    fn parse_line_checks_field_types() {
        assert!(parse_line(br#"{"_id":1,"_source":{}}"#).is_err());
        assert!(parse_line(br#"{"_id":"a","_source":[]}"#).is_err());
        assert!(parse_line(br#"{"_id":"a"}"#).is_err());
        assert!(parse_line(b"not json").is_err());
    }

    #[test]
    fn line_copies_fields_verbatim() {
        let mut out = Vec::new();
        let src = raw(r#"{"z":1,"big":9223372036854775807,"f":1.50,"u":"\u00e9é"}"#);
        push_line(&mut out, raw(r#""id\"1""#), Some(raw(r#""r1""#)), src);
        push_line(&mut out, raw(r#""2""#), None, raw("{}"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"_id":"id\"1","_routing":"r1","_source":{"z":1,"big":9223372036854775807,"f":1.50,"u":"\u00e9é"}}"#,
                "\n",
                r#"{"_id":"2","_source":{}}"#,
                "\n"
            )
        );
    }
}
