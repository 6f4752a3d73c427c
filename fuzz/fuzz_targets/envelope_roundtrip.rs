//! Every value comes back equal from its envelope, compressed or not: `open(seal(v)) == v` in
//! the default codec. In every other codec a value comes back equal or not at all (a format
//! that cannot carry it, such as JSON for some shapes, refuses it): never as another value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_cached::__private::bench::{open, open_in, seal, seal_in};
use redis_cached::Codec;

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
    for &codec in Codec::ENABLED {
        if let Some(sealed) = seal_in(codec, &value, compress_above) {
            let back = open_in::<Value>(codec, &sealed);
            assert!(
                back.is_none() || back.as_ref() == Some(&value),
                "{codec}: {back:?}"
            );
        }
        let sealed = seal_in(codec, &product, compress_above).expect("a product encodes");
        assert_eq!(
            open_in::<Product>(codec, &sealed).as_ref(),
            Some(&product),
            "{codec}"
        );
    }
});
