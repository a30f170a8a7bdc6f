//! The data line of an archive: `{"_id":…,"_routing":…,"_source":…}` and a
//! newline, built by copying the raw JSON of each field from the server's
//! answer. Nothing is parsed into a value, so big integers and key order
//! survive exactly and a line costs one `memcpy` per field.

use serde::Deserialize;
use serde_json::value::RawValue;

/// A data line, borrowed from the bytes it was read from.
#[derive(Debug, Deserialize)]
pub struct ArchiveLine<'a> {
    #[serde(rename = "_id", borrow)]
    pub id: &'a RawValue,
    #[serde(rename = "_routing", default, borrow)]
    pub routing: Option<&'a RawValue>,
    #[serde(rename = "_source", borrow)]
    pub source: &'a RawValue,
}

/// Parses one data line; `Err` says what is wrong with it.
pub fn parse_line(line: &[u8]) -> Result<ArchiveLine<'_>, String> {
    let parsed: ArchiveLine = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    if !parsed.id.get().starts_with('"') {
        return Err("\"_id\" is not a string".into());
    }
    if !parsed.source.get().starts_with('{') {
        return Err("\"_source\" is not an object".into());
    }
    if parsed
        .routing
        .is_some_and(|r| !r.get().starts_with('"') && r.get() != "null")
    {
        return Err("\"_routing\" is not a string".into());
    }
    Ok(parsed)
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
pub fn push_line(out: &mut Vec<u8>, id: &RawValue, routing: Option<&RawValue>, source: &RawValue) {
    let (id, source) = (id.get().as_bytes(), source.get().as_bytes());
    out.reserve(id.len() + source.len() + 48);
    out.extend_from_slice(b"{\"_id\":");
    out.extend_from_slice(id);
    if let Some(r) = routing {
        out.extend_from_slice(b",\"_routing\":");
        out.extend_from_slice(r.get().as_bytes());
    }
    out.extend_from_slice(b",\"_source\":");
    push_json_single_line(out, source);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn pretty_printed_sources_stay_on_one_line() {
        let mut out = Vec::new();
        push_line(
            &mut out,
            &raw(r#""1""#),
            None,
            &raw("{\n  \"a\": \"x\\ny\"\r\n}"),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"_id\":\"1\",\"_source\":{   \"a\": \"x\\ny\"  }}\n"
        );
    }

    #[test]
    fn parse_line_checks_field_types() {
        let l = parse_line(br#"{"_id":"a","_routing":"r","_source":{"n":18446744073709551616}}"#)
            .unwrap();
        assert_eq!(l.source.get(), r#"{"n":18446744073709551616}"#);
        assert!(parse_line(br#"{"_id":1,"_source":{}}"#).is_err());
        assert!(parse_line(br#"{"_id":"a","_source":[]}"#).is_err());
        assert!(parse_line(br#"{"_id":"a"}"#).is_err());
        assert!(parse_line(b"not json").is_err());
    }

    #[test]
    fn line_copies_fields_verbatim() {
        let mut out = Vec::new();
        let src = raw(r#"{"z":1,"big":9223372036854775807,"f":1.50,"u":"\u00e9é"}"#);
        push_line(&mut out, &raw(r#""id\"1""#), Some(&raw(r#""r1""#)), &src);
        push_line(&mut out, &raw(r#""2""#), None, &raw("{}"));
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
