//! Commands about many keys at once (a batch call's lookup, locks, stores and invalidations):
//! one round trip per server, whatever the number of keys.
//!
//! - On one server, `GET`s become `MGET`s and other commands one pipeline; on a cluster, the
//!   keys are grouped by the primary serving their slot and each group is one pipeline, the
//!   groups sent concurrently (each key has a hash tag of its own, so the keys of a batch are
//!   spread over all slots and `MGET` could not span them).
//! - Large batches are split into chunks of a configured number of keys
//!   ([`CacheBuilder::batch_chunk`](crate::CacheBuilder::batch_chunk)), sent concurrently over
//!   the multiplexed link: Redis runs each chunk as one command or pipeline, so no call holds
//!   the server for longer than one chunk takes.
//! - Every key gets its own answer: a chunk or group that fails (a timeout, a primary whose
//!   breaker is open) fails only its keys, and the caller falls back for those alone. A reply
//!   that does not parse fails its own key only.

use redis::{Cmd, FromRedisValue, RedisResult, Value};

use super::script::Lua;
use super::server::Server;
use super::{CommandError, Connection, Route};
use crate::breaker::Allow;
use crate::sync::join_all;

/// Per key, its answer (`None`: its command failed), and the failures met, one per failed
/// command, chunk or group (for counting and logging).
pub(crate) struct Answers<T> {
    pub(crate) each: Vec<Option<T>>,
    pub(crate) failures: Vec<CommandError>,
}

impl<T> Answers<T> {
    pub(super) fn failed(n: usize, failure: CommandError) -> Self {
        Answers {
            each: (0..n).map(|_| None).collect(),
            failures: vec![failure],
        }
    }

    pub(super) fn merge(parts: Vec<(Vec<usize>, Answers<T>)>, n: usize) -> Self {
        let mut each: Vec<Option<T>> = (0..n).map(|_| None).collect();
        let mut failures = Vec::new();
        for (indices, part) in parts {
            for (index, answer) in indices.into_iter().zip(part.each) {
                each[index] = answer;
            }
            failures.extend(part.failures);
        }
        Answers { each, failures }
    }
}

/// One command about one key: the key routes it.
pub(crate) struct KeyedCmd<'a> {
    pub(crate) key: &'a str,
    pub(crate) cmd: Cmd,
}

impl Connection {
    /// `GET` of each key: its bytes, `Some(None)` when absent (or not a string), `None` when the
    /// command failed. Sent to the reader endpoint when there is one and its breaker is closed.
    pub(crate) async fn get_many(&self, keys: &[&str], chunk: usize) -> Answers<Option<Vec<u8>>> {
        if let Some(reader) = &self.reader
            && self.catch_up.settled(keys.iter().copied())
            && let Route::Direct(server) = &reader.route
            && server.breaker().allow() != Allow::Skip
        {
            return mget(server, keys, chunk).await;
        }
        match &self.route {
            Route::Direct(server) => {
                if server.breaker().allow() == Allow::Skip {
                    return Answers::failed(keys.len(), CommandError::Unavailable);
                }
                mget(server, keys, chunk).await
            }
            Route::Cluster(_) => {
                let cmds = keys
                    .iter()
                    .map(|key| {
                        let mut cmd = redis::cmd("GET");
                        cmd.arg(*key);
                        KeyedCmd { key, cmd }
                    })
                    .collect();
                let raw = self.run_each_raw(cmds, chunk).await;
                let mut failures = raw.failures;
                let each = raw
                    .each
                    .into_iter()
                    .map(|reply| match reply? {
                        // Another type at the key: as `MGET` answers it (nil), a miss whose
                        // store overwrites it.
                        Err(err) if err.code() == Some("WRONGTYPE") => Some(None),
                        Err(err) => {
                            failures.push(CommandError::Redis(err));
                            None
                        }
                        Ok(value) => parse(value).or_else(|| {
                            failures.push(CommandError::Malformed);
                            None
                        }),
                    })
                    .collect();
                Answers { each, failures }
            }
        }
    }

    /// Runs `lua` once per call (its keys, its arguments), pipelined per server; per call, its
    /// reply. Scripts a server does not know yet are sent again by source.
    pub(crate) async fn eval_many<T: FromRedisValue>(
        &self,
        lua: &Lua,
        calls: &[(Vec<&str>, Vec<&[u8]>)],
        chunk: usize,
    ) -> Answers<T> {
        let command = |verb: &str, script: &str, (keys, args): &(Vec<&str>, Vec<&[u8]>)| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        let by_hash = calls
            .iter()
            .map(|call| KeyedCmd {
                key: call.0.first().copied().unwrap_or(""),
                cmd: command("EVALSHA", lua.hash(), call),
            })
            .collect();
        let (mut answers, unknown) = self.run_each_noting_noscript::<T>(by_hash, chunk).await;
        if unknown.is_empty() {
            return answers;
        }
        let by_source = unknown
            .iter()
            .map(|&index| KeyedCmd {
                key: calls[index].0.first().copied().unwrap_or(""),
                cmd: command("EVAL", lua.source, &calls[index]),
            })
            .collect();
        let again = self.run_each::<T>(by_source, chunk).await;
        for (index, answer) in unknown.into_iter().zip(again.each) {
            answers.each[index] = answer;
        }
        answers.failures.extend(again.failures);
        answers
    }

    /// [`Connection::run_each`], and which commands met `NOSCRIPT` (their answers are `None`
    /// and not counted as failures).
    async fn run_each_noting_noscript<T: FromRedisValue>(
        &self,
        cmds: Vec<KeyedCmd<'_>>,
        chunk: usize,
    ) -> (Answers<T>, Vec<usize>) {
        let replies = self.run_each_raw(cmds, chunk).await;
        let mut unknown = Vec::new();
        let mut failures = replies.failures;
        let each = replies
            .each
            .into_iter()
            .enumerate()
            .map(|(index, reply)| match reply? {
                Err(err) if err.code() == Some("NOSCRIPT") => {
                    unknown.push(index);
                    None
                }
                Err(err) => {
                    failures.push(CommandError::Redis(err));
                    None
                }
                Ok(value) => parse(value),
            })
            .collect();
        (Answers { each, failures }, unknown)
    }

    /// Runs each command on the server its key lives on: one pipeline per server and chunk,
    /// concurrently; per command, its reply (an error reply is a failure of that command).
    pub(crate) async fn run_each<T: FromRedisValue>(
        &self,
        cmds: Vec<KeyedCmd<'_>>,
        chunk: usize,
    ) -> Answers<T> {
        let raw = self.run_each_raw(cmds, chunk).await;
        let mut failures = raw.failures;
        let each = raw
            .each
            .into_iter()
            .map(|reply| match reply? {
                Ok(value) => parse(value).or_else(|| {
                    failures.push(CommandError::Malformed);
                    None
                }),
                Err(err) => {
                    failures.push(CommandError::Redis(err));
                    None
                }
            })
            .collect();
        Answers { each, failures }
    }

    /// [`Connection::run_each`], with each reply as the server sent it: a value, or an error
    /// reply.
    async fn run_each_raw(
        &self,
        cmds: Vec<KeyedCmd<'_>>,
        chunk: usize,
    ) -> Answers<RedisResult<Value>> {
        let n = cmds.len();
        match &self.route {
            Route::Direct(server) => {
                let mut parts = Vec::new();
                let mut cmds = cmds.into_iter().enumerate().peekable();
                while cmds.peek().is_some() {
                    let part: Vec<_> = cmds.by_ref().take(chunk.max(1)).collect();
                    parts.push(async move {
                        let mut pipe = redis::pipe();
                        pipe.ignore_errors();
                        let mut indices = Vec::with_capacity(part.len());
                        for (index, keyed) in part {
                            indices.push(index);
                            pipe.add_command(keyed.cmd);
                        }
                        let answers = match server.run_pipeline::<Vec<Value>>(&pipe).await {
                            Ok(values) if values.len() == indices.len() => Answers {
                                each: values
                                    .into_iter()
                                    .map(|value| Some(value.extract_error()))
                                    .collect(),
                                failures: Vec::new(),
                            },
                            Ok(_) => Answers::failed(indices.len(), CommandError::Malformed),
                            Err(err) => Answers::failed(indices.len(), err),
                        };
                        (indices, answers)
                    });
                }
                Answers::merge(join_all(parts).await, n)
            }
            Route::Cluster(cluster) => Box::pin(cluster.run_each(cmds, chunk)).await,
        }
    }
}

/// `MGET` of `keys` on `server` (its breaker consulted already), in chunks sent concurrently.
async fn mget(server: &Server, keys: &[&str], chunk: usize) -> Answers<Option<Vec<u8>>> {
    let chunks = keys.chunks(chunk.max(1)).map(|part| async move {
        let mut cmd = redis::cmd("MGET");
        cmd.arg(part);
        match server.run_allowed::<Vec<Value>>(&cmd).await {
            Ok(values) if values.len() == part.len() => Answers {
                each: values.into_iter().map(parse::<Option<Vec<u8>>>).collect(),
                failures: Vec::new(),
            },
            Ok(_) => Answers::failed(part.len(), CommandError::Malformed),
            Err(err) => Answers::failed(part.len(), err),
        }
    });
    let mut offset = 0;
    let parts = join_all(chunks.collect())
        .await
        .into_iter()
        .map(|part| {
            let indices = (offset..offset + part.each.len()).collect();
            offset += part.each.len();
            (indices, part)
        })
        .collect();
    Answers::merge(parts, keys.len())
}

/// One reply as `T`; `None` if it is not one (a reply we cannot read is a failure of its key).
pub(super) fn parse<T: FromRedisValue>(value: Value) -> Option<T> {
    redis::from_redis_value(value).ok()
}
