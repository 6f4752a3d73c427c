//! Helper for the cross-process batch test: one process making overlapping batch calls of
//! `fixtures::batch_item` at once.
//!
//! Arguments: `reversed|forward PREFIX URL...` (one URL: a server; more: a cluster's nodes).
//! Prints `ready` once connected, waits for `go` on stdin, makes its calls, checks every answer,
//! and prints `computed ID,ID,...`: the keys its function computed.

use std::io::BufRead;

use redis_cache_tests::fixtures::{BATCH_COMPUTED, batch_item, batch_item_calls, batch_item_value};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [order, prefix, urls @ ..] = args.as_slice() else {
        panic!("arguments: reversed|forward PREFIX URL...");
    };
    let builder = redis_cache_tests::test_builder().prefix(prefix.as_str());
    let cache = match urls {
        [url] => builder.url(url.as_str()),
        nodes => builder.cluster(nodes.iter().map(String::as_str)),
    }
    .build()
    .expect("a valid cache");
    // Connected (and the cluster's slot map read) before the start line.
    let _ = cache.health().await;
    println!("ready");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("stdin");
    let calls = batch_item_calls(order == "reversed");
    let tasks: Vec<_> = calls
        .into_iter()
        .map(|ids| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let got = batch_item(&cache, ids.clone()).await;
                assert_eq!(got.len(), ids.len(), "every key answered");
                for id in ids {
                    assert_eq!(got[&id], batch_item_value(id));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a call");
    }
    cache.flush().await;
    let computed = BATCH_COMPUTED.lock().unwrap().clone();
    let list: Vec<String> = computed.iter().map(u64::to_string).collect();
    println!("computed {}", list.join(","));
}
