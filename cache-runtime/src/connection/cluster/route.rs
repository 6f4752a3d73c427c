//! Sending each command to the primary serving its key's slot.
//!
//! - `MOVED` (a slot moved: resharding, failover): the command is sent once more, to the named
//!   node, which the map records at once. `ASK` (a slot being migrated, the key moved already):
//!   sent once more to the named node, after `ASKING`. A second redirection fails the command
//!   (the call falls back to the function).
//! - A redirection is followed only to a primary of the slot map: one naming any other address
//!   (a node promoted since the last read, or a lying reply) fails the command and has the map
//!   read again, so no connection, and no credentials, go anywhere `CLUSTER SLOTS` did not list.
//! - A multi-key `UNLINK` is split by slot (the cluster refuses keys of several slots in one
//!   command), one pipeline per primary.
//! - A failure that hints at a new topology (no answer, `CLUSTERDOWN`, `TRYAGAIN`, `READONLY`)
//!   has the map read again in the background ([`super::topology`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use redis::{Cmd, FromRedisValue, RedisResult};

use redis::Value;

use super::slot_map::slot_of;
use super::topology::unannounced;
use super::{Cluster, Primary};
use crate::breaker::Allow;
use crate::connection::deployment::Node;
use crate::connection::{Answers, CommandError, KeyedCmd};
use crate::sync::join_all;

impl Cluster {
    /// Runs a command about `key` on the primary serving its slot, following one redirection.
    pub(in crate::connection) async fn run<T: FromRedisValue>(
        self: &Arc<Self>,
        key: &[u8],
        cmd: &Cmd,
    ) -> Result<T, CommandError> {
        let shard = self.primary_for(key).await?;
        match shard.server.run(cmd).await {
            Ok(value) => Ok(value),
            // Boxed: rare, and every command's future would carry it.
            Err(err) => Box::pin(self.after_failure(&shard, err, cmd)).await,
        }
    }

    /// `GET key` on the primary serving its slot, pipelined there with the lookups made at the
    /// same time (`connection::pipelining`). A redirection or a failure reaches only
    /// this lookup's caller, as for a command of its own.
    pub(in crate::connection) async fn get(
        self: &Arc<Self>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, CommandError> {
        let shard = self.primary_for(key.as_bytes()).await?;
        let reply = match shard.server.breaker().allow() {
            Allow::Skip => Err(CommandError::Unavailable),
            Allow::Go => shard.server.get_allowed(key).await,
        };
        match reply {
            Ok(value) => Ok(value),
            // Boxed: rare, and every lookup's future would carry it.
            Err(err) => {
                Box::pin(async {
                    let mut cmd = redis::cmd("GET");
                    cmd.arg(key);
                    self.after_failure(&shard, err, &cmd).await
                })
                .await
            }
        }
    }

    /// A command failed: follows a redirection, or reads the map again if the failure says the
    /// topology may have changed.
    pub(super) async fn after_failure<T: FromRedisValue>(
        self: &Arc<Self>,
        from: &Primary,
        err: CommandError,
        cmd: &Cmd,
    ) -> Result<T, CommandError> {
        if let CommandError::Redis(redis) = &err
            && let Some((address, slot)) = redis.redirect_node()
        {
            let ask = redis.code() == Some("ASK");
            // A node that does not know its own address names it `:port`: the same host.
            let address = match address.rsplit_once(':') {
                Some((host, port)) if unannounced(host) => format!("{}:{port}", from.host),
                _ => address.to_string(),
            };
            let Some(target) = self.primary_at(&address) else {
                // A node the map does not list: read the map again rather than go there.
                self.refresh_soon();
                return Err(err);
            };
            if ask {
                return target.server.run_asking(cmd).await;
            }
            self.map.moved(slot, &target);
            self.refresh_soon();
            return target.server.run(cmd).await;
        }
        if suggests_new_topology(&err) {
            self.refresh_soon();
        }
        Err(err)
    }

    /// [`Cluster::run`] for a command that is not about a key, on one primary (any: the first
    /// whose breaker is closed).
    pub(in crate::connection) async fn run_on<T: FromRedisValue>(
        self: &Arc<Self>,
        cmd: &Cmd,
        node: &Node,
    ) -> Result<T, CommandError> {
        let shard = match node {
            Node::At { host, port } => self.primary_at(&format!("{host}:{port}")),
            Node::Any => {
                if !self.map.is_known() {
                    Box::pin(self.read(false)).await?;
                }
                let serving = self.map.serving();
                let open = |shard: &&Arc<Primary>| shard.server.breaker().is_open();
                serving
                    .iter()
                    .find(|shard| !open(shard))
                    .or(serving.first())
                    .cloned()
            }
        };
        let shard = shard.ok_or(CommandError::Unavailable)?;
        let reply = shard.server.run(cmd).await;
        if let Err(err) = &reply
            && suggests_new_topology(err)
        {
            self.refresh_soon();
        }
        reply
    }

    /// Runs each command on the primary serving its key's slot: one pipeline per primary and
    /// chunk, all sent concurrently; per command, its reply. A command that meets a redirection
    /// (its slot on the move) is sent again on its own, following it.
    pub(in crate::connection) async fn run_each(
        self: &Arc<Self>,
        cmds: Vec<KeyedCmd<'_>>,
        chunk: usize,
    ) -> Answers<RedisResult<Value>> {
        let n = cmds.len();
        let slots: Vec<u16> = cmds.iter().map(|c| slot_of(c.key.as_bytes())).collect();
        // One look at the map for every key; a key whose slot it does not know (no map yet, or
        // a slot in flux) takes the slow path.
        let (owners, mut primaries) = self.map.route(&slots);
        let mut groups: Vec<Vec<(usize, KeyedCmd<'_>)>> =
            primaries.iter().map(|_| Vec::new()).collect();
        let mut unrouted = None;
        for ((index, keyed), owner) in cmds.into_iter().enumerate().zip(owners) {
            let at = match owner {
                Some(at) => at,
                None => match self.primary_for(keyed.key.as_bytes()).await {
                    Ok(primary) => match primaries.iter().position(|p| Arc::ptr_eq(p, &primary)) {
                        Some(at) => at,
                        None => {
                            primaries.push(primary);
                            groups.push(Vec::new());
                            primaries.len() - 1
                        }
                    },
                    // Left unanswered (`None`); one failure for all of them.
                    Err(err) => {
                        unrouted = Some(err);
                        continue;
                    }
                },
            };
            groups[at].push((index, keyed));
        }
        let mut parts = Vec::new();
        for (primary, group) in primaries.iter().zip(groups) {
            let mut group = group.into_iter().peekable();
            while group.peek().is_some() {
                let part: Vec<_> = group.by_ref().take(chunk.max(1)).collect();
                parts.push(self.run_part(primary, part));
            }
        }
        let mut answers = Answers::merge(join_all(parts).await, n);
        answers.failures.extend(unrouted);
        answers
    }

    /// One pipeline of [`Cluster::run_each`], on `primary`: each reply as the server sent it,
    /// but for redirections, which are followed.
    async fn run_part(
        self: &Arc<Self>,
        primary: &Primary,
        part: Vec<(usize, KeyedCmd<'_>)>,
    ) -> (Vec<usize>, Answers<RedisResult<Value>>) {
        let mut indices = Vec::with_capacity(part.len());
        let mut keys = Vec::with_capacity(part.len());
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (index, keyed) in part {
            indices.push(index);
            keys.push(keyed.key);
            pipe.add_command(keyed.cmd);
        }
        let values = match primary.server.run_pipeline::<Vec<Value>>(&pipe).await {
            Ok(values) if values.len() == keys.len() => values,
            Ok(_) => {
                let failed = Answers::failed(keys.len(), CommandError::Malformed);
                return (indices, failed);
            }
            Err(err) => {
                if suggests_new_topology(&err) {
                    self.refresh_soon();
                }
                return (indices, Answers::failed(keys.len(), err));
            }
        };
        let mut each = Vec::with_capacity(keys.len());
        let mut failures = Vec::new();
        for ((key, cmd), value) in keys.iter().zip(pipe.cmd_iter()).zip(values) {
            let reply = value.extract_error();
            if !matches!(&reply, Err(err) if err.redirect_node().is_some()) {
                each.push(Some(reply));
                continue;
            }
            // Rare (slots moving): sent again alone, following the redirection.
            match self.run::<Value>(key.as_bytes(), cmd).await {
                Ok(value) => each.push(Some(Ok(value))),
                // An error reply (NOSCRIPT on the new node...): the caller reads it.
                Err(CommandError::Redis(err)) if err.code().is_some() => each.push(Some(Err(err))),
                Err(err) => {
                    failures.push(err);
                    each.push(None);
                }
            }
        }
        (indices, Answers { each, failures })
    }

    /// `UNLINK` of keys of any slots: one command per slot, sent as one pipeline per primary;
    /// how many existed. A command that meets a redirection (its slot on the move) is sent
    /// again on its own, following it.
    pub(in crate::connection) async fn unlink<K>(
        self: &Arc<Self>,
        keys: &[K],
    ) -> Result<u64, CommandError>
    where
        K: AsRef<[u8]> + redis::ToRedisArgs + Sync,
    {
        let mut by_slot: BTreeMap<u16, Vec<&K>> = BTreeMap::new();
        for key in keys {
            by_slot.entry(slot_of(key.as_ref())).or_default().push(key);
        }
        let mut by_shard: Vec<(Arc<Primary>, Vec<Vec<&K>>)> = Vec::new();
        for keys in by_slot.into_values() {
            let shard = self.primary_for(keys[0].as_ref()).await?;
            match by_shard.iter_mut().find(|(s, _)| Arc::ptr_eq(s, &shard)) {
                Some((_, groups)) => groups.push(keys),
                None => by_shard.push((shard, vec![keys])),
            }
        }
        let mut removed = 0;
        for (shard, groups) in by_shard {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for keys in &groups {
                pipe.cmd("UNLINK").arg(keys);
            }
            let replies = match shard
                .server
                .run_pipeline::<Vec<RedisResult<u64>>>(&pipe)
                .await
            {
                Ok(replies) => replies,
                Err(err) => {
                    if suggests_new_topology(&err) {
                        self.refresh_soon();
                    }
                    return Err(err);
                }
            };
            for (keys, reply) in groups.iter().zip(replies) {
                match reply {
                    Ok(count) => removed += count,
                    // The slot is on the move: this group again, following the redirection.
                    Err(err) if err.redirect_node().is_some() => {
                        let mut cmd = redis::cmd("UNLINK");
                        cmd.arg(keys);
                        removed += self.run::<u64>(keys[0].as_ref(), &cmd).await?;
                    }
                    Err(err) => return Err(CommandError::Redis(err)),
                }
            }
        }
        Ok(removed)
    }

    /// The primary serving `key`'s slot, reading the map first if none is known.
    pub(super) async fn primary_for(
        self: &Arc<Self>,
        key: &[u8],
    ) -> Result<Arc<Primary>, CommandError> {
        let slot = slot_of(key);
        if let Some(shard) = self.map.owner(slot) {
            return Ok(shard);
        }
        if self.map.is_known() {
            // A map read while the cluster was forming, or a slot no primary serves right now.
            self.refresh_soon();
            return Err(CommandError::Unavailable);
        }
        Box::pin(self.read(false)).await?;
        self.map.owner(slot).ok_or(CommandError::Unavailable)
    }
}

/// Whether a failed command hints that slots moved: no answer, or a cluster in flux.
pub(super) fn suggests_new_topology(err: &CommandError) -> bool {
    match err {
        CommandError::Timeout | CommandError::Unavailable => true,
        CommandError::WrongType | CommandError::Malformed => false,
        // No code: not a server's reply (a dropped connection, I/O).
        CommandError::Redis(err) => {
            matches!(
                err.code(),
                None | Some("CLUSTERDOWN" | "TRYAGAIN" | "READONLY")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_that_hint_at_a_move_read_the_map_again() {
        // An error reply as a server sends it.
        let reply = |line: &str| {
            let value = redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap();
            CommandError::Redis(value.extract_error().unwrap_err())
        };
        assert_eq!(
            match reply("TRYAGAIN Multiple keys request during rehashing of slot") {
                CommandError::Redis(err) => err.code().map(str::to_string),
                _ => None,
            },
            Some("TRYAGAIN".to_string()),
            "the helper makes real error replies"
        );
        assert!(suggests_new_topology(&CommandError::Timeout));
        assert!(suggests_new_topology(&CommandError::Unavailable));
        assert!(suggests_new_topology(&reply(
            "CLUSTERDOWN The cluster is down"
        )));
        assert!(suggests_new_topology(&reply(
            "TRYAGAIN Multiple keys request"
        )));
        assert!(suggests_new_topology(&reply("READONLY You can't write")));
        assert!(!suggests_new_topology(&CommandError::WrongType));
        assert!(!suggests_new_topology(&reply("OOM command not allowed")));
        assert!(!suggests_new_topology(&reply("NOPERM no permissions")));
    }
}
