//! A stub cluster node on loopback, speaking just enough RESP to lie: it answers `CLUSTER SLOTS`
//! with a map it is given and every data command with a redirection (`MOVED` or `ASK`) to an
//! address it is given. With a [`Trap`] listening there, a test sees whether the cache follows a
//! redirection to a node the map does not list (and sends it the configured credentials).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A listener on a free loopback port that counts the connections made to it.
#[derive(Debug)]
pub struct Trap {
    pub port: u16,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Self {
            port,
            connections,
            task,
        }
    }

    /// The connections made to it so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How the stub answers a data command.
#[derive(Clone, Copy, Debug)]
pub enum Redirect {
    Moved,
    Ask,
}

/// The stub node. Its `CLUSTER SLOTS` reply is `slots(port)`, given its own port.
#[derive(Debug)]
pub struct StubNode {
    pub port: u16,
    slot_reads: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl StubNode {
    pub async fn start(
        slots: impl Fn(u16) -> Vec<u8> + Send + 'static,
        redirect: Redirect,
        to: String,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let reply = Arc::new(slots(port));
        let (reads, slot_reads) = watch::channel(0);
        let reads = Arc::new(reads);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (reply, reads, to) = (reply.clone(), reads.clone(), to.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &reply, &reads, redirect, &to).await;
                });
            }
        });
        Self {
            port,
            slot_reads,
            task,
        }
    }

    /// Waits until the stub has answered `CLUSTER SLOTS` at least `n` times.
    pub async fn slot_reads_reach(&mut self, n: usize) {
        let reads = self.slot_reads.wait_for(|&reads| reads >= n);
        tokio::time::timeout(crate::POLL_BOUND, reads)
            .await
            .unwrap_or_else(|_| panic!("CLUSTER SLOTS read {n} times"))
            .expect("the stub runs");
    }
}

impl Drop for StubNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `CLUSTER SLOTS` reply giving every slot to the primary at `127.0.0.1:port`.
pub fn one_primary(port: u16) -> Vec<u8> {
    slots_reply(&[(0, 16383, port)])
}

/// A `CLUSTER SLOTS` reply: each `(first, last, port)` range served by `127.0.0.1:port`.
pub fn slots_reply(ranges: &[(u16, u16, u16)]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", ranges.len()).into_bytes();
    for (first, last, port) in ranges {
        out.extend_from_slice(
            format!("*3\r\n:{first}\r\n:{last}\r\n*2\r\n$9\r\n127.0.0.1\r\n:{port}\r\n").as_bytes(),
        );
    }
    out
}

async fn serve(
    stream: TcpStream,
    slots: &[u8],
    reads: &watch::Sender<usize>,
    redirect: Redirect,
    to: &str,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    while let Some(command) = next_command(&mut read).await? {
        let name = command
            .first()
            .map(|c| c.to_ascii_uppercase())
            .unwrap_or_default();
        let second = command
            .get(1)
            .map(|c| c.to_ascii_uppercase())
            .unwrap_or_default();
        let reply: Vec<u8> = match (name.as_slice(), second.as_slice()) {
            (b"CLUSTER", b"SLOTS") => {
                reads.send_modify(|reads| *reads += 1);
                slots.to_vec()
            }
            (b"PING", _) => b"+PONG\r\n".to_vec(),
            (b"AUTH" | b"CLIENT" | b"SELECT" | b"READONLY", _) => b"+OK\r\n".to_vec(),
            // Any data command: somewhere else, slot 0.
            _ => match redirect {
                Redirect::Moved => format!("-MOVED 0 {to}\r\n").into_bytes(),
                Redirect::Ask => format!("-ASK 0 {to}\r\n").into_bytes(),
            },
        };
        write.write_all(&reply).await?;
    }
    Ok(())
}

/// One command (an array of bulk strings), or `None` when the client has gone.
async fn next_command(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<Vec<Vec<u8>>>> {
    let mut line = String::new();
    if read.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let count: usize = line
        .trim_end()
        .strip_prefix('*')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not a command: {line:?}")))?;
    let mut parts = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        read.read_line(&mut line).await?;
        let len: usize = line
            .trim_end()
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not a bulk string: {line:?}")))?;
        let mut part = vec![0; len + 2];
        read.read_exact(&mut part).await?;
        part.truncate(len);
        parts.push(part);
    }
    Ok(Some(parts))
}
