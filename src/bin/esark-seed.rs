//! `esark-seed`: fills a cluster with a deterministic sample data set for the
//! quick start and the benchmarks: several indices (a custom analyzer and
//! explicit mapping on 2 shards, a Kuzzle-style `%` index, a hidden `.`
//! index), aliases (filtered with routing, write alias), one legacy, one
//! composable and one component template, and documents of about 0.9 KB
//! with nested objects, arrays, unicode, dates, routing and integers above
//! 2^53.
//!
//! `esark-seed --target URL [--docs N] [--seed S] [--prefix P]`

use std::process::ExitCode;

use bytes::Bytes;
use clap::Parser;
use elasticsearch::http::Method;
use esark::cluster::{encode_segment, Cluster, ClusterConfig, ClusterError};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "esark-seed",
    about = "Seed a cluster with esark's sample data set"
)]
struct Args {
    /// Cluster URL (user:password may be in it).
    #[arg(long)]
    target: String,
    /// Total documents, spread over the data indices.
    #[arg(long, default_value_t = 5000)]
    docs: u64,
    /// Seed of the generator: the same seed gives the same documents.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Prefix of every index, alias and template name.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Documents per bulk request.
    #[arg(long, default_value_t = 2000)]
    batch: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(seed(&args)) {
        Ok(total) => {
            eprintln!("seeded {total} documents into {}", redact(&args.target));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn redact(url: &str) -> String {
    esark::cluster::redact_url_text(url)
}

async fn seed(args: &Args) -> Result<u64, ClusterError> {
    let (url, auth) = ClusterConfig::from_url(&args.target)?;
    let cluster = Cluster::connect(&ClusterConfig {
        url,
        auth,
        ca_cert: None,
        client_cert: None,
        insecure: false,
        timeout: std::time::Duration::from_secs(300),
    })
    .await?;
    let p = &args.prefix;
    let put = |path: String, body: serde_json::Value| {
        let cluster = cluster.clone();
        async move {
            cluster
                .call(Method::Put, &path, Some(Bytes::from(body.to_string())))
                .await
                .map(|_| ())
        }
    };
    put(
        format!("_component_template/{p}sample-settings"),
        json!({"template": {"settings": {"number_of_replicas": 0}}}),
    )
    .await?;
    put(
        format!("_index_template/{p}sample-logs"),
        json!({"index_patterns": [format!("{p}sample-logs-*")], "composed_of": [format!("{p}sample-settings")], "priority": 7,
               "template": {"mappings": {"properties": {"@timestamp": {"type": "date"}}}}}),
    )
    .await?;
    put(
        format!("_template/{p}sample-legacy"),
        json!({"index_patterns": [format!("{p}legacy-*")], "order": 3, "settings": {"number_of_shards": 1},
               "mappings": {"properties": {"tag": {"type": "keyword"}}}}),
    )
    .await?;

    let products = format!("{p}products");
    put(
        encode_segment(&products),
        json!({
            "settings": {"number_of_shards": 2, "number_of_replicas": 0, "analysis": {
                "filter": {"folding": {"type": "asciifolding", "preserve_original": true}},
                "analyzer": {"product_text": {"type": "custom", "tokenizer": "standard", "filter": ["lowercase", "folding"]}}}},
            "mappings": {"properties": {
                "name": {"type": "text", "analyzer": "product_text", "fields": {"raw": {"type": "keyword"}}},
                "sku": {"type": "keyword"}, "price": {"type": "scaled_float", "scaling_factor": 100},
                "stock": {"type": "long"}, "big": {"type": "long"}, "created": {"type": "date"},
                "tags": {"type": "keyword"},
                "vendor": {"properties": {"name": {"type": "keyword"}, "country": {"type": "keyword"}}},
                "variants": {"type": "nested", "properties": {"color": {"type": "keyword"}, "qty": {"type": "integer"}}},
                "description": {"type": "text"}}}
        }),
    )
    .await?;
    let kuzzle = format!("%{p}kuzzle");
    put(
        encode_segment(&kuzzle),
        json!({"settings": {"number_of_replicas": 0}}),
    )
    .await?;
    let hidden = format!(".{p}internal");
    put(
        encode_segment(&hidden),
        json!({"settings": {"index.hidden": true, "number_of_replicas": 0}}),
    )
    .await?;
    let logs = format!("{p}sample-logs-2026.11");
    put(encode_segment(&logs), json!({})).await?;
    cluster
        .call(
            Method::Post,
            "_aliases",
            Some(Bytes::from(
                json!({"actions": [
                    {"add": {"index": products, "alias": format!("{p}products-red"), "filter": {"term": {"tags": "red"}}, "routing": "eu"}},
                    {"add": {"index": products, "alias": format!("{p}products-write"), "is_write_index": true}},
                    {"add": {"index": logs, "alias": format!("{p}logs")}}
                ]})
                .to_string(),
            )),
        )
        .await?;

    // Spread documents: most to products, the rest over the other indices.
    let plan = [
        (products.as_str(), args.docs * 6 / 10),
        (logs.as_str(), args.docs * 3 / 10),
        (kuzzle.as_str(), args.docs / 20),
        (
            hidden.as_str(),
            args.docs - args.docs * 6 / 10 - args.docs * 3 / 10 - args.docs / 20,
        ),
    ];
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let mut total = 0;
    for (index, count) in plan {
        let mut i = 0;
        while i < count {
            let n = args.batch.min(count - i);
            let mut body = String::with_capacity(n as usize * 1100);
            for k in i..i + n {
                let routing = if k % 7 == 0 {
                    ",\"routing\":\"eu\""
                } else {
                    ""
                };
                let action =
                    json!({"index": {"_index": index, "_id": format!("{k:08}")}}).to_string();
                body.push_str(&action[..action.len() - 2]);
                body.push_str(routing);
                body.push_str("}}\n");
                body.push_str(&esark::sample::document(&mut rng, k));
                body.push('\n');
            }
            let answer = cluster
                .call(Method::Post, "_bulk", Some(Bytes::from(body)))
                .await?;
            let v: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
            if v.get("errors").and_then(|e| e.as_bool()) != Some(false) {
                let first = v["items"]
                    .as_array()
                    .and_then(|items| items.iter().find(|it| it["index"]["error"].is_object()))
                    .map(|it| it["index"]["error"].to_string())
                    .unwrap_or_else(|| "unknown".into());
                return Err(ClusterError::BadResponse {
                    url: cluster.url().to_string(),
                    method: "POST".into(),
                    path: "/_bulk".into(),
                    reason: format!("bulk items failed: {first}"),
                });
            }
            i += n;
            total += n;
        }
    }
    cluster.call(Method::Post, "_refresh", None).await?;
    Ok(total)
}
