//! Writes the seed corpora: for `envelope_open`, valid envelopes of several value types,
//! compressed and not, so the fuzzer starts from inputs that pass the header checks; for
//! `decode_nested`, the hostile payloads found so far (nesting far past the depth limit, small
//! blocks expanding to huge sequences), so a decoder that loses a limit fails at once.
//! `scripts/fuzz` runs it (the corpora are generated, never committed).
//!
//! `seeds <corpus dir>` writes `envelope_open`'s, `seeds --nested <corpus dir>` `decode_nested`'s.

use std::collections::BTreeMap;
use std::path::Path;

use redis_cached::Codec;

#[path = "../../fuzz_targets/values.rs"]
mod values;
use values::{Product, Value};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, dir] if flag == "--nested" => nested(Path::new(dir)),
        [dir] => envelopes(Path::new(dir)),
        _ => panic!("usage: seeds [--nested] <corpus dir>"),
    }
}

/// `decode_nested`'s inputs: a mode byte (bit 0: LZ4), then the payload.
fn nested(dir: &Path) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    let repeat = |unit: &[u8], times: usize, end: &[u8]| -> Vec<u8> {
        let mut out = unit.repeat(times);
        out.extend_from_slice(end);
        out
    };
    let varint_u64_max_half = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0x80]; // bincode varint: 2^63
    let payloads: [(&str, Vec<u8>); 6] = [
        // `Category { id, children }`: id 0, one child, 200,000 deep.
        ("category-deep", repeat(&[0, 1], 200_000, &[0, 0])),
        // `Expr::Neg(Box<Expr>)` (variant 1), 200,000 deep.
        ("expr-deep", repeat(&[1], 200_000, &[0, 0])),
        // `Value::List` (variant 8) of one element, 200,000 deep.
        ("value-deep", repeat(&[8, 1], 200_000, &[0])),
        // 6 million empty strings (144 MB of `String`s): a 23 KB block.
        (
            "empty-strings",
            repeat(&[0xfc, 0x80, 0x8d, 0x5b, 0x00], 1, &vec![0; 6_000_000]),
        ),
        // A sequence of zero-sized values claiming 2^63 elements.
        ("zst-claim", varint_u64_max_half.to_vec()),
        // A map claiming 2^63 entries.
        ("map-claim", repeat(&varint_u64_max_half, 1, &[0; 64])),
    ];
    let mut n = 0;
    for (name, payload) in payloads {
        // Plain when small enough for a fuzz input; compressed always (as the cache stores).
        if payload.len() <= 4096 {
            write_seed(dir, &format!("{name}-plain"), 0, &payload);
            n += 1;
        }
        let block = lz4_flex::block::compress_prepend_size(&payload);
        write_seed(dir, &format!("{name}-lz4"), 1, &block);
        n += 1;
    }
    println!("{n} seeds in {}", dir.display());
}

fn write_seed(dir: &Path, name: &str, mode: u8, payload: &[u8]) {
    let mut seed = vec![mode];
    seed.extend_from_slice(payload);
    std::fs::write(dir.join(name), seed).expect("write seed");
}

/// `envelope_open`'s inputs: whole envelopes.
fn envelopes(dir: &Path) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    let product = Product {
        id: 42,
        name: "lamp ".repeat(100),
        price_cents: Some(1999),
        tags: vec!["home".into(), "light".into()],
        ratings: BTreeMap::from([("alice".into(), (5, -1)), ("bob".into(), (3, 7))]),
    };
    let value = Value::List(vec![
        Value::Text("x".repeat(500)),
        Value::Record {
            id: 7,
            product: Some(product.clone()),
        },
        Value::Map(BTreeMap::from([(
            "k".into(),
            Value::Float(1.5f64.to_bits()),
        )])),
    ]);
    let mut n = 0;
    let mut write = |bytes: Vec<u8>| {
        std::fs::write(dir.join(format!("seed-{n:02}")), bytes).expect("write seed");
        n += 1;
    };
    for (&codec, compress_above) in Codec::ENABLED
        .iter()
        .flat_map(|c| [(c, 0), (c, usize::MAX)])
    {
        let seal = |value: &dyn erased::Sealable| value.seal(codec, compress_above);
        write(seal(&product));
        write(seal(&value));
        write(seal(&"a string value".repeat(40)));
        write(seal(&(0..300u64).collect::<Vec<_>>()));
        write(seal(&Some((7u32, "pair".to_string()))));
        write(seal(&None::<(u32, String)>));
        write(seal(&seeds_map()));
    }
    println!("{n} seeds in {}", dir.display());
}

fn seeds_map() -> BTreeMap<String, Vec<u8>> {
    (0..50)
        .map(|i| (format!("key{i}"), vec![i as u8; 20]))
        .collect()
}

/// A value of any type, sealed by one closure.
mod erased {
    use redis_cached::__private::bench::seal_in;
    use redis_cached::Codec;
    use serde::Serialize;

    pub trait Sealable {
        fn seal(&self, codec: Codec, compress_above: usize) -> Vec<u8>;
    }

    impl<T: Serialize> Sealable for T {
        fn seal(&self, codec: Codec, compress_above: usize) -> Vec<u8> {
            seal_in(codec, self, compress_above).expect("the seeds encode in every codec")
        }
    }
}
