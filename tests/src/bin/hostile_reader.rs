//! Helper for the hostile-data tests: reads one crafted entry through a cached function, in a
//! process of its own, so that a crash (a stack overflow aborts the whole process) shows as its
//! exit status instead of taking the test binary down.
//!
//! Arguments: `URL PREFIX FUNCTION THREAD`, FUNCTION one of `tree`, `strings`, `units`, THREAD
//! `main` (the main thread, 8 MiB of stack) or `worker` (a Tokio worker, 2 MiB). It calls the
//! function once (a miss, which stores), prints `key <key>`, waits for a line on stdin (the test
//! writes the crafted bytes meanwhile), calls it again and prints `answer <summary> invalid <n>
//! peak <bytes>`: what it returned, the entries found unreadable, its peak memory.

use std::io::BufRead;

use redis_cached::{Cache, redis_cache};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Node {
    children: Vec<Node>,
}

#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "hostile::tree")]
async fn tree(cache: &Cache, id: u64) -> Node {
    let _ = id;
    Node { children: vec![] }
}

#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "hostile::strings")]
async fn strings(cache: &Cache, id: u64) -> Vec<String> {
    vec![format!("fresh {id}")]
}

#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "hostile::units")]
async fn units(cache: &Cache, id: u64) -> Vec<()> {
    let _ = id;
    vec![(); 3]
}

async fn call(cache: &Cache, function: &str) -> String {
    match function {
        "tree" => format!("{} children", tree(cache, 1).await.children.len()),
        "strings" => strings(cache, 1).await.join(","),
        "units" => format!("{} units", units(cache, 1).await.len()),
        other => panic!("unknown function {other}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, prefix, function, thread] = args.as_slice() else {
        panic!("arguments: URL PREFIX FUNCTION THREAD");
    };
    let runtime = match thread.as_str() {
        "main" => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .expect("a runtime");
    let cache = redis_cache_tests::test_builder()
        .url(url.as_str())
        .prefix(prefix.as_str())
        .build()
        .expect("a cache");
    let function = function.clone();
    let on_worker = thread != "main";
    runtime.block_on(async move {
        let run = |cache: Cache, function: String| async move { call(&cache, &function).await };
        let first = run(cache.clone(), function.clone()).await;
        assert!(!first.is_empty());
        let redis = redis::Client::open(url.as_str()).unwrap();
        let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let key = keys
            .into_iter()
            .find(|k| !k.ends_with(":lock"))
            .expect("the entry");
        println!("key {key}");
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).expect("stdin");
        let answer = match on_worker {
            true => tokio::spawn(run(cache.clone(), function.clone()))
                .await
                .expect("the call"),
            false => run(cache.clone(), function.clone()).await,
        };
        let invalid = redis_cached::stats().iter().map(|s| s.invalid).sum::<u64>();
        let peak = redis_cache_tests::hostile::peak_memory();
        println!("answer {answer} invalid {invalid} peak {peak}");
    });
}
