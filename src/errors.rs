//! Helpers for error chains, shared by every layer.

/// The innermost cause of an error, which is the informative part
/// ("Connection refused (os error 111)") of reqwest's nested errors, and of
/// `aws-config`'s ("an error occurred while loading credentials" around
/// the reason).
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current: &(dyn std::error::Error + 'static) = error;
    let mut text = current.to_string();
    while let Some(next) = current.source() {
        current = next;
        let t = current.to_string();
        if !t.is_empty() {
            text = t;
        }
    }
    text
}
