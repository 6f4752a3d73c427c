//! The Lua scripts the cache runs atomically on the server: sent by hash (`EVALSHA`), and by
//! source the first time a server does not know one ([`super::Connection::eval`]).

use std::sync::OnceLock;

/// A Lua script the cache runs atomically on the server.
pub(crate) struct Lua {
    pub(super) source: &'static str,
    hash: OnceLock<String>,
}

impl Lua {
    pub(crate) const fn new(source: &'static str) -> Self {
        Lua {
            source,
            hash: OnceLock::new(),
        }
    }

    pub(super) fn hash(&self) -> &str {
        self.hash
            .get_or_init(|| redis::Script::new(self.source).get_hash().to_string())
    }
}
