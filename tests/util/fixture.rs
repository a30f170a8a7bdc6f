//! The standard data set seeded by the dump (and later restore) tests.
//!
//! [`Fixture::seed`] creates, under the test's prefix `<p>`:
//!
//! | name              | what                                                          |
//! |-------------------|---------------------------------------------------------------|
//! | `<p>-main`        | 2 shards, custom analyzer, explicit mapping (nested, multi-field), big integers, unicode, escapes, routing, odd ids |
//! | `%<p>-kuzzle`     | a Kuzzle-style `%` name, a few routed docs                     |
//! | `.<p>-hidden`     | `index.hidden: true`, dot name                                 |
//! | `<p>-other`       | plain index                                                    |
//! | `<p>-closed`      | closed after seeding                                           |
//! | aliases           | `<p>-filtered` (filter + routing), `<p>-write` (write index on main, not on other), `<p>-kz` (index/search routing) |
//! | templates         | legacy `<p>-legacy`, composable `<p>-composable` using component `<p>-component` |
//!
//! Every `_source` is sent as a literal compact JSON string and remembered
//! in [`Fixture::sent`], so a test can compare archive bytes with what was
//! sent. (osmem returns `_source` verbatim apart from insignificant
//! whitespace, and Elasticsearch returns it verbatim: compact JSON is the
//! same bytes on both.)

use std::collections::BTreeMap;

use serde_json::json;

use super::server::{BulkBody, TestCluster};

/// (index, id) -> (routing, exact `_source` text).
pub type Sent = BTreeMap<(String, String), (Option<String>, String)>;

pub struct Fixture {
    pub cluster: TestCluster,
    pub main: String,
    pub kuzzle: String,
    pub hidden: String,
    pub other: String,
    pub closed: String,
    pub legacy_template: String,
    pub index_template: String,
    pub component_template: String,
    /// Every document sent to an open index.
    pub sent: Sent,
}

/// Documents of `<p>-main` that exercise one thing each: (id, routing, source).
fn special_docs() -> Vec<(String, Option<&'static str>, String)> {
    let docs: Vec<(String, Option<&str>, &str)> = vec![
        (
            "max-long".into(),
            None,
            r#"{"big":9223372036854775807,"title":"max long"}"#,
        ),
        (
            "min-long".into(),
            None,
            r#"{"big":-9223372036854775808,"title":"min long"}"#,
        ),
        (
            "beyond-double".into(),
            None,
            r#"{"big":9007199254740993,"n":-9007199254740993,"title":"2^53+1 is not a double"}"#,
        ),
        (
            "unicode".into(),
            None,
            r#"{"title":"emoji 😀🎉👩‍👩‍👧 CJK 中文字符 日本語のテキスト 한국어 RTL עברית العربية","tags":["ünïcödé","中文"]}"#,
        ),
        (
            "escapes".into(),
            None,
            r##"{"text":"quote \" backslash \\ slash \/ newline \n tab \t ctrl \u0001 e-acute \u00e9 astral \ud83d\ude00","title":"escapes"}"##,
        ),
        (
            "nested".into(),
            None,
            r#"{"title":"nested","comments":[{"author":"ann","stars":5},{"author":"bob","stars":1}],"meta":{"a":{"b":{"c":[1,2,3],"d":null,"e":true}}}}"#,
        ),
        (
            "numbers".into(),
            None,
            r#"{"price":1.50,"meta":{"exp":1e3,"neg_zero":-0.0,"small":1.0E-7}}"#,
        ),
        (
            "key-order".into(),
            None,
            r#"{"z":1,"a":2,"m":{"y":[3,2,1],"b":{}},"title":"keys not sorted"}"#,
        ),
        ("empty".into(), None, r#"{}"#),
        (
            "date".into(),
            None,
            r#"{"created":"2024-02-29T23:59:59.999Z","title":"leap day"}"#,
        ),
        (
            "routed-ascii".into(),
            Some("tenant-a"),
            r#"{"title":"routed","n":1}"#,
        ),
        (
            "routed-unicode".into(),
            Some("tenant-ü-中"),
            r#"{"title":"routed unicode","n":2}"#,
        ),
        (
            "id with spaces/slash?&#%".into(),
            Some("r/1"),
            r#"{"title":"odd id"}"#,
        ),
        ("日本語-id-😀".into(), None, r#"{"title":"unicode id"}"#),
        ("x".repeat(500), None, r#"{"title":"500-byte id"}"#),
    ];
    docs.into_iter()
        .map(|(id, r, s)| (id, r, s.to_string()))
        .collect()
}

/// The generated bulk of `<p>-main`: document `i`.
fn main_doc(i: usize) -> (String, Option<String>, String) {
    let routing = (i % 7 == 3).then(|| format!("r{}", i % 5));
    let source = format!(
        r#"{{"n":{i},"big":{big},"title":"Document {i}: the quick brown fox","tags":["t{t}","common"],"price":{p}.{c:02},"meta":{{"depth":{{"value":{v},"label":"ünï-{i}"}}}}}}"#,
        big = i64::MAX - i as i64,
        t = i % 7,
        p = i,
        c = i % 100,
        v = i * 3,
    );
    (format!("doc-{i:05}"), routing, source)
}

impl Fixture {
    /// Seeds the standard data set with `main_docs` generated documents in
    /// `<p>-main` (plus the special ones).
    pub fn seed(test_name: &str, main_docs: usize) -> Fixture {
        let cluster = TestCluster::start(test_name);
        let p = cluster.prefix().to_string();
        let f = Fixture {
            main: format!("{p}-main"),
            kuzzle: format!("%{p}-kuzzle"),
            hidden: format!(".{p}-hidden"),
            other: format!("{p}-other"),
            closed: format!("{p}-closed"),
            legacy_template: format!("{p}-legacy"),
            index_template: format!("{p}-composable"),
            component_template: format!("{p}-component"),
            sent: Sent::new(),
            cluster,
        };
        f.create_indices();
        f.create_templates();
        let mut f = f;
        f.seed_docs(main_docs);
        f.cluster.close_index(&f.closed);
        f
    }

    /// A regex that selects exactly this fixture's indices (anchored, so it
    /// works whether esark searches or matches the whole name).
    pub fn match_all(&self) -> String {
        format!("^[.%]?{}-.*$", regex::escape(self.cluster.prefix()))
    }

    /// A regex for exactly one index name.
    pub fn exactly(name: &str) -> String {
        format!("^{}$", regex::escape(name))
    }

    /// The documents sent to the given indices.
    pub fn sent_to(&self, indices: &[&str]) -> Sent {
        self.sent
            .iter()
            .filter(|((index, _), _)| indices.contains(&index.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The open indices (those a dump of [`Fixture::match_all`] holds).
    pub fn open_indices(&self) -> Vec<&str> {
        vec![&self.main, &self.kuzzle, &self.hidden, &self.other]
    }

    fn create_indices(&self) {
        let c = &self.cluster;
        c.create_index(
            &self.main,
            &json!({
                "settings": {
                    "number_of_shards": 2,
                    "number_of_replicas": 0,
                    "refresh_interval": "2s",
                    "analysis": {
                        "analyzer": {
                            "esark_folding": {
                                "type": "custom",
                                "tokenizer": "standard",
                                "filter": ["lowercase", "asciifolding", "esark_stop"]
                            }
                        },
                        "filter": {
                            "esark_stop": {"type": "stop", "stopwords": ["the", "a", "le"]}
                        }
                    }
                },
                "mappings": {
                    "properties": {
                        "title": {
                            "type": "text",
                            "analyzer": "esark_folding",
                            "fields": {"raw": {"type": "keyword", "ignore_above": 256}}
                        },
                        "text": {"type": "text", "analyzer": "esark_folding"},
                        "big": {"type": "long"},
                        "n": {"type": "long"},
                        "tags": {"type": "keyword"},
                        "price": {"type": "double"},
                        "created": {"type": "date"},
                        "comments": {
                            "type": "nested",
                            "properties": {
                                "author": {"type": "keyword"},
                                "stars": {"type": "integer"}
                            }
                        },
                        "meta": {"type": "object", "dynamic": true}
                    }
                }
            }),
        );
        c.create_index(
            &self.kuzzle,
            &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                    "mappings": {"dynamic": "strict", "properties": {
                        "kuzzle": {"properties": {"user": {"type": "keyword"}}},
                        "n": {"type": "integer"}}}}),
        );
        c.create_index(
            &self.hidden,
            &json!({"settings": {"index.hidden": true, "number_of_replicas": 0}}),
        );
        c.create_index(&self.other, &json!({"settings": {"number_of_replicas": 0}}));
        c.create_index(
            &self.closed,
            &json!({"settings": {"number_of_replicas": 0}}),
        );
        let p = c.prefix();
        c.post(
            "/_aliases",
            &json!({"actions": [
                {"add": {"index": self.main, "alias": format!("{p}-filtered"),
                         "filter": {"term": {"tags": "common"}}, "routing": "tenant-a"}},
                {"add": {"index": self.main, "alias": format!("{p}-write"), "is_write_index": true}},
                {"add": {"index": self.other, "alias": format!("{p}-write"), "is_write_index": false}},
                {"add": {"index": self.kuzzle, "alias": format!("{p}-kz"),
                         "index_routing": "1", "search_routing": "1,2"}}
            ]}),
        );
    }

    fn create_templates(&self) {
        let c = &self.cluster;
        let p = c.prefix();
        c.put_legacy_template(
            &self.legacy_template,
            &json!({
                "index_patterns": [format!("{p}-legacy-*")],
                "order": 7,
                "version": 3,
                "settings": {"number_of_shards": 1, "refresh_interval": "5s"},
                "mappings": {"properties": {"ts": {"type": "date"}}},
                "aliases": {format!("{p}-legacy-alias"): {}}
            }),
        );
        c.put_component_template(
            &self.component_template,
            &json!({
                "template": {
                    "settings": {"number_of_replicas": 0},
                    "mappings": {"properties": {"cpu": {"type": "float"}}}
                },
                "version": 1,
                "_meta": {"owner": "esark-tests"}
            }),
        );
        c.put_index_template(
            &self.index_template,
            &json!({
                "index_patterns": [format!("{p}-composable-*")],
                "composed_of": [self.component_template],
                "priority": 271,
                "version": 2,
                "template": {
                    "settings": {"number_of_shards": 1},
                    "aliases": {format!("{p}-composable-alias"): {}}
                },
                "_meta": {"description": "esark test"}
            }),
        );
    }

    fn seed_docs(&mut self, main_docs: usize) {
        let mut docs: Vec<(String, String, Option<String>, String)> = Vec::new();
        for (id, routing, source) in special_docs() {
            docs.push((self.main.clone(), id, routing.map(str::to_string), source));
        }
        for i in 0..main_docs {
            let (id, routing, source) = main_doc(i);
            docs.push((self.main.clone(), id, routing, source));
        }
        for i in 0..40 {
            let routing = (i % 4 == 0).then(|| "1".to_string());
            docs.push((
                self.kuzzle.clone(),
                format!("k{i}"),
                routing,
                format!(r#"{{"kuzzle":{{"user":"user-{i}"}},"n":{i}}}"#),
            ));
        }
        for i in 0..15 {
            docs.push((
                self.hidden.clone(),
                format!("h{i}"),
                None,
                format!(r#"{{"secret":false,"i":{i}}}"#),
            ));
        }
        for i in 0..25 {
            docs.push((
                self.other.clone(),
                format!("o{i}"),
                None,
                format!(r#"{{"other":"value {i}"}}"#),
            ));
        }
        // The closed index: never part of a dump, so not in `sent`.
        let mut bulk = BulkBody::new();
        for i in 0..5 {
            bulk.index(&self.closed, &format!("c{i}"), None, r#"{"closed":1}"#);
        }
        self.cluster.bulk(bulk.as_str());
        for chunk in docs.chunks(2000) {
            let mut bulk = BulkBody::new();
            for (index, id, routing, source) in chunk {
                serde_json::from_str::<serde_json::Value>(source)
                    .unwrap_or_else(|e| panic!("fixture source is not JSON: {e}: {source}"));
                bulk.index(index, id, routing.as_deref(), source);
            }
            self.cluster.bulk(bulk.as_str());
        }
        for (index, id, routing, source) in docs {
            let previous = self.sent.insert((index, id.clone()), (routing, source));
            assert!(previous.is_none(), "fixture id {id} used twice");
        }
        for index in self.open_indices() {
            let expected = self.sent.keys().filter(|(i, _)| i == index).count() as u64;
            assert_eq!(
                self.cluster.count(index),
                expected,
                "seeded count of {index}"
            );
        }
    }
}

/// A regex matching every name that starts with none of `prefixes`
/// (the regex crate has no look-ahead, so the complement is spelled out as
/// a trie). Used on a shared cluster to keep the default selection to this
/// test's indices via `--exclude`.
pub fn not_starting_with(prefixes: &[&str]) -> String {
    fn class_escape(c: char) -> String {
        if c.is_ascii_alphanumeric() || !c.is_ascii() {
            c.to_string()
        } else {
            format!("\\{c}")
        }
    }
    fn build(tails: &[Vec<char>]) -> String {
        let mut firsts: BTreeMap<char, Vec<Vec<char>>> = BTreeMap::new();
        for t in tails {
            firsts.entry(t[0]).or_default().push(t[1..].to_vec());
        }
        let class: String = firsts.keys().map(|&c| class_escape(c)).collect();
        let mut alternatives = vec!["$".to_string(), format!("[^{class}].*")];
        for (c, rest) in firsts {
            if rest.iter().any(|r| r.is_empty()) {
                // A whole prefix matched: this branch is never "not starting".
                continue;
            }
            alternatives.push(format!("{}{}", regex::escape(&c.to_string()), build(&rest)));
        }
        format!("(?:{})", alternatives.join("|"))
    }
    let tails: Vec<Vec<char>> = prefixes.iter().map(|p| p.chars().collect()).collect();
    assert!(tails.iter().all(|t| !t.is_empty()));
    format!("^{}", build(&tails))
}
