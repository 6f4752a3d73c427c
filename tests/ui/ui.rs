//! Compile-time behaviour of `#[redis_cache]`: every supported shape compiles (`pass/`), and
//! every rejected one fails with its own message, spanned on the user's tokens (`fail/`).
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p redis-cache-ui-tests`,
//! then read every changed `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    t.compile_fail("fail/*.rs");
}
