//! Every value comes back equal from its envelope, compressed or not: `open(seal(v)) == v`.
#![no_main]

use redis_cached::__private::bench::{open, seal};
use libfuzzer_sys::fuzz_target;

mod values;
use values::{Product, Value};

fuzz_target!(|input: (Value, Product, bool)| {
    let (value, product, compress) = input;
    // 0: compress whenever it saves an eighth; MAX: never.
    let compress_above = if compress { 0 } else { usize::MAX };
    let sealed = seal(&value, compress_above);
    assert_eq!(open::<Value>(&sealed).as_ref(), Some(&value));
    let sealed = seal(&product, compress_above);
    assert_eq!(open::<Product>(&sealed).as_ref(), Some(&product));
    // The wrong type is refused, not misread into a panic.
    let _ = open::<Product>(&seal(&value, compress_above));
});
