//! Adding an entry to its tags before it is stored: each tag's sorted set gains the key (scored
//! by its expiry), and a tag invalidated since the computation began fences the store off.

use std::time::{Duration, Instant};

use crate::connection::{CommandError, Connection, Lua, millis};
use crate::tags::{TAG_FENCE_WINDOW, tag_keys};

/// `KEYS`: tag set, mark. `ARGV`: entry key, ms the entry lives (with [`SCORE_SLACK`]). Adds
/// the entry (scored by its expiry), drops expired members, keeps the set as long as its last
/// member; returns the mark (or false) and Redis's time, both in microseconds.
static ADD_TO_TAG: Lua = Lua::new(
    r"local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now_ms + tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('ZADD', KEYS[1], expires, ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(last[2]) - now_ms))
return {redis.call('GET', KEYS[2]), t[1] .. string.format('%06d', tonumber(t[2]))}",
);

/// Added to a tag member's score (its entry's expiry): the entry is stored right after its tags
/// are added (a round trip or two, each bounded by the command timeout), so its expiry comes a
/// little later too, and the member must not go first.
const SCORE_SLACK: Duration = Duration::from_secs(5);

/// Adds `key` to each of `tags` before its store (all at once: one round trip, whatever their
/// number); `false` if one of them was invalidated after the computation began (at `started`,
/// the body's start), or the computation ran longer than the marks are kept: then nothing may
/// be stored.
///
/// The invalidation's mark is compared with the computation's start on Redis's clock, bounded
/// from below with the add's round trip, so no two clocks are compared: the script ran at
/// `now_us`, no earlier than the add was sent, which came `sent - started` after the start.
pub(super) async fn add_tags(
    conn: &Connection,
    prefix: &str,
    tags: &[String],
    key: &str,
    keep: Duration,
    started: Instant,
) -> Result<bool, CommandError> {
    let keep_ms = millis(keep.saturating_add(SCORE_SLACK)).to_string();
    let adds = tags.iter().map(|tag| {
        let keep_ms = &keep_ms;
        async move {
            let (set, mark) = tag_keys(prefix, tag);
            let sent = Instant::now();
            let reply: (Option<String>, String) = conn
                .eval(
                    &ADD_TO_TAG,
                    &[&set, &mark],
                    &[key.as_bytes(), keep_ms.as_bytes()],
                )
                .await?;
            Ok::<_, CommandError>((sent, sent.elapsed(), reply))
        }
    });
    for reply in crate::sync::join_all(adds.collect()).await {
        let (sent, round_trip, (marked, now_us)) = reply?;
        let since_start = sent.duration_since(started) + round_trip;
        // A mark lives `TAG_FENCE_WINDOW`: past that, an invalidation may have left no trace.
        if since_start >= TAG_FENCE_WINDOW {
            return Ok(false);
        }
        let Some(marked) = marked else { continue };
        let (Ok(marked), Ok(now_us)) = (marked.parse::<u64>(), now_us.parse::<u64>()) else {
            return Ok(false);
        };
        let started_us = now_us.saturating_sub(since_start.as_micros() as u64);
        if marked >= started_us {
            return Ok(false);
        }
    }
    Ok(true)
}
