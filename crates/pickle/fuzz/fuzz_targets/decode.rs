//! Fuzz the decoder: any input must give a value or an error, never a
//! panic, a hang or unbounded memory; every value it gives must survive
//! `repr` and `inspect`, and re-encoding at every protocol must decode again
//! (to a value with the same `inspect` text at protocols 4 and 5; `repr`
//! shows the addresses of opaque objects, which differ between the two).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpmanager_pickle::repr::{inspect, repr};
use mpmanager_pickle::{decode_with, encode_with, DecodeOptions, EncodeOptions};

fuzz_target!(|data: &[u8]| {
    let mut opts = DecodeOptions::default();
    opts.max_input = 1 << 20;
    opts.max_depth = 200;
    opts.max_items = 1 << 16;
    opts.max_memo = 1 << 12;
    let Ok(v) = decode_with(data, &opts) else {
        // A malformed pickle may have built cycles before failing.
        mpmanager_pickle::cycles::collect_cycles();
        return;
    };
    let _ = repr(&v);
    let shown = inspect(&v);
    for proto in 2..=5u8 {
        let mut eo = EncodeOptions::protocol(proto);
        eo.max_depth = 400;
        if let Ok(bytes) = encode_with(&v, &eo) {
            let mut big = DecodeOptions::default();
            big.max_depth = 400;
            let again = decode_with(&bytes, &big).expect("our own pickle must decode");
            // Below protocol 4, loading maps Python 2 module names
            // (`copy_reg` -> `copyreg`, as CPython's fix_imports does), so a
            // global that happens to carry such a name comes back renamed;
            // CPython has the same asymmetry. From 4 on, names are exact.
            if proto >= 4 {
                assert_eq!(inspect(&again), shown, "protocol {proto}");
            }
        }
    }
    drop(v);
    // Recursive values are freed by the cycle collector, not by counting;
    // LeakSanitizer checks that it does.
    mpmanager_pickle::cycles::collect_cycles();
});
