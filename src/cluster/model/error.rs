//! The error body Elasticsearch and OpenSearch send with a non-2xx status:
//! `{"error":{"type":…,"reason":…,"root_cause":[…]},"status":…}`, or in
//! older versions and proxies a plain string. Amazon OpenSearch Service
//! answers requests it refuses before the cluster sees them (a wrong SigV4
//! signature, an IAM denial) with `{"message":…}` or `{"Message":…}`.

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct ErrorBody {
    error: Value,
}

/// The body of AWS's own refusals.
#[derive(Deserialize)]
struct AwsMessage {
    #[serde(alias = "Message")]
    message: String,
}

/// A one-line reason from an error body: `type: reason`, the first root
/// cause when the top-level reason is empty, or the start of the raw text.
pub fn reason(body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        return match parsed.error {
            Value::String(s) => one_line(&s),
            Value::Object(map) => {
                let kind = map.get("type").and_then(Value::as_str).unwrap_or("error");
                let root = map.get("root_cause").and_then(|r| r.get(0));
                let root_reason = root.and_then(|r| r.get("reason")).and_then(Value::as_str);
                let reason = map
                    .get("reason")
                    .and_then(Value::as_str)
                    .filter(|r| !r.is_empty())
                    .or(root_reason)
                    .unwrap_or("");
                let mut text = format!("{kind}: {reason}");
                // The root cause often says what happened ("all shards
                // failed" does not): keep it when it is another error.
                if let Some(root_kind) = root.and_then(|r| r.get("type")).and_then(Value::as_str) {
                    if root_kind != kind {
                        text.push_str(&format!(
                            " (caused by {root_kind}: {})",
                            root_reason.unwrap_or("")
                        ));
                    }
                }
                one_line(&text)
            }
            other => one_line(&other.to_string()),
        };
    }
    if let Ok(aws) = serde_json::from_slice::<AwsMessage>(body) {
        return one_line(&aws.message);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "empty response body".into()
    } else {
        one_line(text)
    }
}

fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 300 {
        let cut: String = flat.chars().take(300).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::reason;

    #[test]
    fn aws_refusal() {
        let body = br#"{"message":"The request signature we calculated does not match the signature you provided."}"#;
        assert_eq!(
            reason(body),
            "The request signature we calculated does not match the signature you provided."
        );
        let body = br#"{"Message":"User: anonymous is not authorized to perform: es:ESHttpGet"}"#;
        assert_eq!(
            reason(body),
            "User: anonymous is not authorized to perform: es:ESHttpGet"
        );
    }

    #[test]
    fn structured_error() {
        let body = br#"{"error":{"root_cause":[{"type":"index_not_found_exception","reason":"no such index [x]"}],"type":"index_not_found_exception","reason":"no such index [x]"},"status":404}"#;
        assert_eq!(reason(body), "index_not_found_exception: no such index [x]");
    }

    #[test]
    fn a_different_root_cause_is_kept() {
        let body = br#"{"error":{"root_cause":[{"type":"search_context_missing_exception","reason":"No search context found for id [1]"}],"type":"search_phase_execution_exception","reason":"all shards failed"},"status":404}"#;
        assert_eq!(
            reason(body),
            "search_phase_execution_exception: all shards failed (caused by search_context_missing_exception: No search context found for id [1])"
        );
    }

    #[test]
    fn string_error_and_plain_text() {
        assert_eq!(
            reason(br#"{"error":"Incorrect HTTP method"}"#),
            "Incorrect HTTP method"
        );
        assert_eq!(
            reason(b"<html>\n bad gateway </html>"),
            "<html> bad gateway </html>"
        );
        assert_eq!(reason(b""), "empty response body");
    }
}
