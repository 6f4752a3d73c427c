//! Code the examples share. `catalog` is the example service (`cargo run --release --example
//! service`), kept in the library so its integration test runs the same code; `cli` is how
//! every example reads its command line.

pub mod catalog;
pub mod cli;
