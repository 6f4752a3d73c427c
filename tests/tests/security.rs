//! TLS with the test's own CA and client certificates, and ACL users: what works, what falls
//! back with one clear error, and that no secret is ever printed. The `acl` suite: a user granted
//! exactly the documented commands runs every feature (also against a cluster, in `cluster.rs`).

redis_cache_tests::suite!(acl, redis_cache_tests::deployment::Topology::Single);

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use redis_cache_tests::logs::Capture;
use redis_cache_tests::tls::Certificates;
use redis_cache_tests::{RedisServer, test_builder};
use redis_cached::{Cache, redis_cache};
use tracing::Level;

const PASSWORD: &str = "s3cret-Pa55word";

static TLS_RUNS: AtomicU64 = AtomicU64::new(0);

#[redis_cache(ttl = 300, skip(cache), cache = cache)]
async fn over_tls(cache: &Cache, id: u64) -> u64 {
    TLS_RUNS.fetch_add(1, SeqCst);
    id + 10
}

#[tokio::test]
async fn tls_with_the_test_ca_and_a_client_certificate_caches() {
    let certs = Certificates::generate();
    let server = certs.server();
    let cache = test_builder()
        .url(format!("rediss://127.0.0.1:{}", server.port()))
        .tls_ca_pem(certs.read("ca.crt"))
        .tls_client_pem(certs.read("client.crt"), certs.read("client.key"))
        .prefix("tls")
        .build()
        .unwrap();
    assert_eq!(over_tls(&cache, 1).await, 11);
    cache.flush().await;
    assert_eq!(over_tls(&cache, 1).await, 11);
    assert_eq!(TLS_RUNS.load(SeqCst), 1, "the second call is a hit");
    let stats = redis_cached::stats_for("security::over_tls").unwrap();
    assert_eq!((stats.hits, stats.misses, stats.fallbacks), (1, 1, 0));
}

static WRONG_CA_RUNS: AtomicU64 = AtomicU64::new(0);

#[redis_cache(ttl = 300, skip(cache), cache = cache)]
async fn wrong_ca(cache: &Cache, id: u64) -> u64 {
    WRONG_CA_RUNS.fetch_add(1, SeqCst);
    id + 20
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_falls_back_with_one_clear_error() {
    let (logs, _guard) = Capture::install();
    let certs = Certificates::generate();
    let server = certs.server();
    let cache = test_builder()
        .url(format!("rediss://127.0.0.1:{}", server.port()))
        .tls_ca_pem(certs.read("other-ca.crt"))
        .tls_client_pem(certs.read("client.crt"), certs.read("client.key"))
        .circuit_breaker(1, std::time::Duration::ZERO, std::time::Duration::ZERO)
        .prefix("wrong-ca")
        .build()
        .unwrap();
    for id in 0..20 {
        assert_eq!(wrong_ca(&cache, id).await, id + 20);
    }
    assert_eq!(
        WRONG_CA_RUNS.load(SeqCst),
        20,
        "every call ran the function"
    );
    let stats = redis_cached::stats_for("security::wrong_ca").unwrap();
    assert_eq!(stats.fallbacks, 20);
    assert_eq!(
        logs.count(Level::WARN, "TLS handshake with Redis failed"),
        1,
        "one clear error, not one per call"
    );
    assert!(logs.mentions("certificate"), "the error says why");
}

/// A server with a user `app` allowed only keys and channels under `acl:` (and no command: the
/// login is refused first).
async fn acl_server() -> RedisServer {
    let server = RedisServer::start();
    let _: () = server
        .command(&[
            "ACL",
            "SETUSER",
            "app",
            "on",
            &format!(">{PASSWORD}"),
            "resetkeys",
            "~acl:*",
            "resetchannels",
            "&acl:*",
        ])
        .await
        .unwrap();
    server
}

static WRONG_PASSWORD_RUNS: AtomicU64 = AtomicU64::new(0);

#[redis_cache(ttl = 300, skip(cache), cache = cache)]
async fn wrong_password(cache: &Cache, id: u64) -> u64 {
    WRONG_PASSWORD_RUNS.fetch_add(1, SeqCst);
    id + 40
}

#[tokio::test]
async fn a_wrong_password_falls_back_with_one_clear_error_and_is_never_printed() {
    let (logs, _guard) = Capture::install();
    let server = acl_server().await;
    let wrong = "not-the-Pa55word";
    let builder = test_builder()
        .url(format!("redis://127.0.0.1:{}", server.port()))
        .credentials(Some("app"), wrong)
        .circuit_breaker(1, std::time::Duration::ZERO, std::time::Duration::ZERO)
        .prefix("acl");
    let printed = format!("{builder:?}");
    assert!(!printed.contains(wrong), "{printed}");
    let cache = builder.build().unwrap();
    for id in 0..20 {
        assert_eq!(wrong_password(&cache, id).await, id + 40);
    }
    assert_eq!(
        WRONG_PASSWORD_RUNS.load(SeqCst),
        20,
        "every call ran the function"
    );
    assert_eq!(
        logs.count(Level::WARN, "authentication or ACL permissions"),
        1,
        "one clear error, not one per call"
    );
    assert!(!logs.mentions(wrong), "the password is never logged");
    let stats = redis_cached::stats_for("security::wrong_password").unwrap();
    assert!(!format!("{stats:?}").contains(wrong));
    assert!(!format!("{:?}", cache.breaker()).contains(wrong));
}

#[test]
fn secrets_in_urls_and_certificates_are_never_printed() {
    let certs_key = b"-----BEGIN PRIVATE KEY-----\nsecret-key-material\n";
    let builder = Cache::builder()
        .cluster(["redis://app:hunter2@127.0.0.1:7000", "127.0.0.1:7001"])
        .reader_url("rediss://app:hunter3@replica:6379")
        .credentials(Some("app"), "hunter4")
        .tls_client_pem(b"cert".to_vec(), certs_key.to_vec());
    let printed = format!("{builder:?}");
    for secret in ["hunter2", "hunter3", "hunter4", "secret-key-material"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    let err = Cache::builder()
        .sentinel(["redis://:hunter5@[bad"], "primary")
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains("hunter5"), "{err}");
}

#[test]
fn the_acl_list_in_the_docs_is_the_one_the_suite_grants() {
    let docs = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/operations.md"
    ));
    let documented: Vec<&str> = docs
        .split_whitespace()
        .filter(|word| word.starts_with('+') && word.len() > 1)
        .filter(|word| !["+select", "+client|setinfo"].contains(word))
        .collect();
    let granted: Vec<&str> = redis_cached::ACL_COMMANDS.split_whitespace().collect();
    assert_eq!(documented, granted);
}
