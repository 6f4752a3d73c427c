//! Configuration: the named defaults ([`defaults`]), the environment ([`env`]) and the
//! [`CacheBuilder`] ([`builder`]), and the error for a configuration the cache cannot use.

mod builder;
mod defaults;
mod env;

use std::fmt;

pub use builder::CacheBuilder;
pub(crate) use builder::ValueLimits;
pub use defaults::*;
pub use env::*;

/// A configuration the cache cannot work with. The message names the setting and never contains
/// a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
