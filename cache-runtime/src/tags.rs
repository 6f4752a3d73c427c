//! Tags: invalidate every entry that depends on one record, across functions, in time that
//! follows the tag's entries and not the database (`tags("product:{id}")`,
//! [`Cache::invalidate_tag`]).
//!
//! Each tag is a sorted set, `{prefix}:#tag:{<tag>}`, of the keys of its entries, scored by when
//! each expires (Redis's clock). A tagged store adds its key first, dropping members that have
//! expired, and keeps the set alive as long as its longest-lived member: the set's memory
//! follows its entries' TTLs (that half is part of the store protocol, `crate::flow::store`).
//! A hit reads nothing more than an untagged one.
//!
//! `invalidate_tag` marks the tag (`{prefix}:#tag:{<tag>}:at`, Redis's time, kept
//! [`TAG_FENCE_WINDOW`]) and reads the set's members in one script, then deletes those entries'
//! locks, then the entries, with `UNLINK`, then removes them from the set (unless added again
//! meanwhile), so an invalidation that fails half-way can be run again. Nothing here needs two
//! slots at once, so it works the same on a cluster, where the tag and its entries live on different
//! nodes. No resurrection, for a computation that started before the invalidation, either way
//! it falls:
//! - its key was added to the set before the invalidation's script: the invalidation deletes the
//!   key's lock, so its store (fenced by that lock) stores nothing, or, if it landed before the
//!   lock went, is deleted with the entries right after;
//! - added after: the add returns the mark, which is later than the computation's start as Redis's
//!   clock puts it (bounded from below with the add's round trip, so no two clocks are compared):
//!   the computation stores nothing.

use std::time::Duration;

use crate::cache::Cache;
use crate::connection::{Lua, millis};
use crate::error::CacheError;
use crate::stampede::lock;

/// How long a tag's invalidation fences off computations that started before it (its mark is
/// kept that long). A computation of a tagged entry running longer than this stores nothing,
/// mark or not.
pub(crate) const TAG_FENCE_WINDOW: Duration = Duration::from_secs(3600);

/// Entries deleted per `UNLINK` by an invalidation.
const UNLINK_BATCH: usize = 1000;

/// `KEYS`: tag set, mark, snapshot. `ARGV`: ms the mark lives. Marks the tag with Redis's time
/// (µs) and copies the set's live members with their scores into the snapshot (kept as long as
/// the mark), which the invalidation then reads in pages: the reply is a count, whatever the
/// tag's size. The set keeps its members until they are deleted ([`FORGET`]), so an
/// invalidation that fails half-way can be run again.
static TAKE: Lua = Lua::new(
    r"local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])), 'PX', ARGV[1])
redis.call('DEL', KEYS[3])
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now_ms, '+inf', 'WITHSCORES')
local page = {}
for i = 1, #live, 2 do
  page[#page + 1] = live[i + 1]
  page[#page + 1] = live[i]
  if #page >= 1000 then
    redis.call('ZADD', KEYS[3], unpack(page))
    page = {}
  end
end
if #page > 0 then redis.call('ZADD', KEYS[3], unpack(page)) end
if #live > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[1]) end
return #live / 2",
);

/// `KEYS`: snapshot. `ARGV`: page size. The first members of the snapshot, with their scores.
static PAGE: Lua =
    Lua::new(r"return redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')");

/// `KEYS`: tag set, snapshot. `ARGV`: member, score, member, score... Takes each member out of
/// the snapshot, and out of the set if it is still at the score [`TAKE`] read: one added again
/// since (a computation that began after the mark) keeps its place, so a later invalidation
/// finds it.
static FORGET: Lua = Lua::new(
    r"for i = 1, #ARGV, 2 do
  redis.call('ZREM', KEYS[2], ARGV[i])
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) == ARGV[i + 1] then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return 0",
);

/// A tag as it appears in keys: ASCII letters, digits and `_ - . : /` as they are, every other
/// byte (`%` included) as `%XX`. So a value rendered into a tag cannot add a glob character, a
/// hash tag or a space, and `invalidate_tag` finds what a store wrote for the same string.
pub(crate) fn encode(tag: &str) -> String {
    let mut out = String::with_capacity(tag.len());
    for byte in tag.bytes() {
        if crate::key::is_segment_char(char::from(byte)) && byte.is_ascii() {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The sorted set of `tag`'s entries, and its invalidation mark.
pub(crate) fn tag_keys(prefix: &str, tag: &str) -> (String, String) {
    let set = format!("{prefix}:#tag:{{{}}}", encode(tag));
    let mark = format!("{set}:at");
    (set, mark)
}

/// Whether `member` of a tag's set is a key of the cache with `prefix` (anyone who can write to
/// the set could add anything: another cache's keys, another service's, garbage), of the shape
/// `{prefix}:{function}:{fingerprint}:{{args}}` (32 hex digits between the braces).
fn is_entry_of(member: &[u8], prefix: &str) -> bool {
    let Ok(key) = std::str::from_utf8(member) else {
        return false;
    };
    let Some(rest) = key.strip_prefix(prefix).and_then(|r| r.strip_prefix(':')) else {
        return false;
    };
    let Some(args) = rest
        .strip_suffix('}')
        .and_then(|r| r.rsplit_once(":{"))
        .map(|(_, args)| args)
    else {
        return false;
    };
    // The function segment is not checked character by character: a function's name may be
    // any Rust identifier (`größe`, `r#match`), and under `{prefix}:` (a prefix cannot nest in
    // another) nothing but this cache's keys can match.
    args.len() == 32 && args.bytes().all(|b| b.is_ascii_hexdigit()) && !rest.starts_with("#tag:")
}

impl Cache {
    /// Removes every entry tagged `tag` (by `tags("product:{id}", ...)` or `tags = |v| ...`), in
    /// every function, and fences off the computations of those entries already running: none
    /// stores its value afterwards. Returns how many entries were removed.
    ///
    /// Takes time in proportion to the tag's entries, not the database: one script on the tag,
    /// which marks it and copies its list of entries aside, then pages of a thousand entries
    /// (`UNLINK` of their locks, then of the entries). A member of the tag's set that is not a
    /// key of this cache is dropped from the set, never deleted.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64, CacheError> {
        self.invalidate_tags(&[tag]).await
    }

    /// [`Cache::invalidate_tag`] for several tags; an entry carrying two of them counts once
    /// per tag it was listed under.
    pub async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64, CacheError> {
        let conn = crate::invalidation::usable(self)?;
        let window = millis(TAG_FENCE_WINDOW).to_string();
        let mut removed = 0;
        for tag in tags {
            let (set, mark) = tag_keys(self.prefix(), tag);
            let snapshot = format!("{set}:snap");
            let _: i64 = conn
                .eval(&TAKE, &[&set, &mark, &snapshot], &[window.as_bytes()])
                .await?;
            loop {
                // A page of the snapshot: bounded replies, whatever the tag's size.
                let page: Vec<(Vec<u8>, Vec<u8>)> = conn
                    .eval(&PAGE, &[&snapshot], &[UNLINK_BATCH.to_string().as_bytes()])
                    .await?;
                if page.is_empty() {
                    break;
                }
                let keys: Vec<String> = page
                    .iter()
                    .filter(|(member, _)| is_entry_of(member, self.prefix()))
                    .filter_map(|(member, _)| String::from_utf8(member.clone()).ok())
                    .collect();
                // Locks first: a store that lands before its lock goes is deleted with the
                // entries; one after finds its lock gone and stores nothing.
                conn.changed(keys.iter().map(String::as_str));
                let locks: Vec<String> = keys.iter().map(|key| lock::lock_key(key)).collect();
                conn.unlink(&locks).await?;
                removed += conn.unlink(&keys).await?;
                // This process's copies go now (the others' when Redis announces it).
                if let Some(local) = self.local() {
                    local.invalidate_keys(&keys);
                }
                // Members that are not this cache's keys leave the set too, untouched.
                let pairs: Vec<&[u8]> = page
                    .iter()
                    .flat_map(|(member, score)| [member.as_slice(), score.as_slice()])
                    .collect();
                conn.eval::<i64>(&FORGET, &[&set, &snapshot], &pairs)
                    .await?;
            }
            crate::stats::tag_invalidated();
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_keep_key_characters_and_encode_the_rest() {
        assert_eq!(encode("product:42"), "product:42");
        assert_eq!(encode("user:a b*{x}%"), "user:a%20b%2A%7Bx%7D%25");
        assert_eq!(encode("é"), "%C3%A9");
        let (set, mark) = tag_keys("app", "catalog");
        assert_eq!(set, "app:#tag:{catalog}");
        assert_eq!(mark, "app:#tag:{catalog}:at");
    }

    #[test]
    fn only_keys_of_this_cache_are_entries() {
        for entry in [
            "app:shop::product:0a1b2c3d:{000000000000000000000000000000ff}",
            // Any identifier can name a function.
            "app:shop::größe:0a1b2c3d:{000000000000000000000000000000ff}",
            "app:shop::r#match:0a1b2c3d:{000000000000000000000000000000ff}",
        ] {
            assert!(is_entry_of(entry.as_bytes(), "app"), "{entry}");
        }
        for other in [
            &b"other:shop::product:0a1b2c3d:{000000000000000000000000000000ff}"[..],
            b"app-eu:shop::product:0a1b2c3d:{000000000000000000000000000000ff}",
            b"app:shop::product:0a1b2c3d:#{000000000000000000000000000000ff}:lock",
            b"app:#tag:{catalog}",
            b"app:shop::product:0a1b2c3d:{00000000000000000000000000000zff}",
            b"app:x",
            b"important-user-data",
            b"app:\xff\xfe:0a1b2c3d:{000000000000000000000000000000ff}",
            &[0xff, 0xfe, 0xfd],
        ] {
            assert!(
                !is_entry_of(other, "app"),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
