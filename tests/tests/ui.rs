//! Compile-time behaviour of `#[redis_cache]`: every supported shape compiles (`ui/pass`), and
//! every rejected one fails with its own message, spanned on the user's tokens (`ui/fail`).
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p redis-cache-tests --test ui`,
//! then read every changed `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
