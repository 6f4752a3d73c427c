//! A program in which caching is off or bypassed in one way, named by its first argument; it
//! installs no `tracing` subscriber unless `NOTICES_SUBSCRIBER=1` (then it captures the events
//! and prints them on stdout as `LEVEL message` lines at exit). `tests/logging.rs` reads what it
//! prints on stderr.
//!
//! - `invalid-config`: the default cache, from an invalid `REDIS_URL`, called three times;
//! - `no-runtime`: called three times outside any Tokio runtime (a hand-rolled `block_on`);
//! - `tracking-refused`: a `local = N` function on the cache at `REDIS_URL`, a server that
//!   refuses `CLIENT TRACKING`; waits for the refusal;
//! - `does-not-read-back`: a value whose `Serialize` writes a timestamp as seconds and whose
//!   `Deserialize` wants a string, called for five keys twice on the cache at `REDIS_URL`; prints
//!   the function's counters on stdout as `writes=N fallbacks=N misses=N`.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use redis_cache_tests::logs::Capture;
use redis_cached::{Cache, redis_cache};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[redis_cache(ttl = 60)]
async fn double(x: u64) -> u64 {
    x * 2
}

#[redis_cache(ttl = 60, local = 10, cache = cache, skip(cache))]
async fn kept(cache: &Cache, x: u64) -> u64 {
    x * 3
}

/// Seconds since the epoch, written as a number and read (wrongly) as a string.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stamp(u64);

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Stamp, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(Stamp).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Reading {
    at: Stamp,
    value: u64,
}

#[redis_cache(ttl = 60, cache = cache, skip(cache))]
async fn reading(cache: &Cache, id: u64) -> Reading {
    Reading {
        at: Stamp(1_700_000_000),
        value: id,
    }
}

fn main() {
    let capture = std::env::var_os("NOTICES_SUBSCRIBER").map(|_| {
        let capture = Capture::default();
        tracing::subscriber::set_global_default(capture.clone()).expect("the first subscriber");
        capture
    });
    let scenario = std::env::args().nth(1).expect("a scenario");
    match scenario.as_str() {
        "invalid-config" => on_tokio(async {
            for x in 0..3 {
                assert_eq!(double(x).await, x * 2);
            }
        }),
        "no-runtime" => {
            for x in 0..3 {
                assert_eq!(block_on(double(x)), x * 2);
            }
        }
        "tracking-refused" => on_tokio(async {
            let cache = Cache::from_env().expect("REDIS_URL is valid");
            let mut events = cache.local_events().expect("a local tier");
            assert_eq!(kept(&cache, 1).await, 3);
            // The channel's task reports the refusal (and says so) before this event.
            events.changed().await.expect("the tier is alive");
        }),
        "does-not-read-back" => on_tokio(async {
            let cache = Cache::from_env().expect("REDIS_URL is valid");
            for _ in 0..2 {
                for id in 0..5 {
                    assert_eq!(reading(&cache, id).await.value, id);
                }
            }
            cache.flush().await;
            let stats = reading_stats();
            println!(
                "writes={} fallbacks={} misses={}",
                stats.writes, stats.fallbacks, stats.misses
            );
        }),
        other => panic!("unknown scenario {other}"),
    }
    if let Some(capture) = capture {
        for (level, message) in capture.events() {
            println!("{level} {message}");
        }
    }
}

fn on_tokio(work: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(work);
}

/// The smallest executor: polls `future` on this thread, parking between wake-ups.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(value) => return value,
            Poll::Pending => std::thread::park(),
        }
    }
}
