//! Nothing to use: this package holds the trybuild cases of `#[redis_cache]` (`pass/`, `fail/`)
//! and their runner (`ui.rs`).
