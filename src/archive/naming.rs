//! Folder names for indices: safe and unambiguous on Linux, macOS and
//! Windows for any legal index name.
//!
//! Bytes in `[a-z0-9_-]` are kept; every other byte of the UTF-8 name is
//! written `%XX` with uppercase hex. The result is pure ASCII (so no Unicode
//! normalization by macOS can change it), its letters are lowercase and its
//! hex uppercase (so two names never differ only by case, which matters on
//! case-insensitive file systems), and it holds no `.`, `:` or other
//! character Windows forbids. Windows device names (`con`, `nul`, `com1`…)
//! get their first letter escaped. A name whose encoding is longer than
//! [`MAX_PLAIN`] is cut and ends with `~` and 16 hex digits of its sha256
//! (`~` never appears otherwise, so these cannot collide with plain names).
//! The manifest maps each index to its folder: readers never decode names.

use sha2::{Digest, Sha256};

/// Longest encoding kept whole; file systems allow 255 bytes per name.
pub const MAX_PLAIN: usize = 150;

const RESERVED: &[&str] = &[
    "con", "prn", "aux", "nul", "com0", "com1", "com2", "com3", "com4", "com5", "com6", "com7",
    "com8", "com9", "lpt0", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// The folder name (one path component) for an index name.
pub fn folder_name(index: &str) -> String {
    let mut out = String::with_capacity(index.len());
    for &b in index.as_bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if RESERVED.contains(&out.as_str()) {
        out = format!("%{:02X}{}", out.as_bytes()[0], &out[1..]);
    }
    if out.len() > MAX_PLAIN {
        let digest = hex::encode(Sha256::digest(index.as_bytes()));
        // Cut on a boundary that does not split a `%XX` escape.
        let mut cut = 128;
        if let Some(p) = out[cut - 2..cut].find('%') {
            cut = cut - 2 + p;
        }
        out = format!("{}~{}", &out[..cut], &digest[..16]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table() {
        let cases = [
            ("logs-2024", "logs-2024"),
            ("%kuzzle", "%25kuzzle"),
            (".kibana_1", "%2Ekibana_1"),
            ("a:b", "a%3Ab"),
            ("données", "donn%C3%A9es"),
            ("con", "%63on"),
            ("nul", "%6Eul"),
            ("console", "console"),
            ("UPPER", "%55%50%50%45%52"),
        ];
        for (name, want) in cases {
            assert_eq!(folder_name(name), want, "{name}");
        }
    }

    #[test]
    fn distinct_names_get_distinct_folders_even_ignoring_case() {
        let names = [
            "a", "A", "%41", "%2541", ".a", "%2Ea", "con", "%63on", "a.b", "a%2Eb", "日本", "x~y",
        ];
        let mut seen = HashSet::new();
        for n in names {
            assert!(
                seen.insert(folder_name(n).to_lowercase()),
                "collision for {n}"
            );
        }
    }

    #[test]
    fn long_names_are_cut_with_a_digest() {
        let a = "é".repeat(120);
        let b = format!("{}x", "é".repeat(119));
        let (fa, fb) = (folder_name(&a), folder_name(&b));
        assert!(fa.len() <= MAX_PLAIN && fb.len() <= MAX_PLAIN);
        assert_ne!(fa, fb);
        let before_tilde = fa.split('~').next().unwrap();
        // No escape is split: every `%` is followed by two hex digits.
        for (i, _) in before_tilde.match_indices('%') {
            assert!(before_tilde.len() >= i + 3, "{fa}");
        }
    }
}
