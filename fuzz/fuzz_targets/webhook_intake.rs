//! Fuzzes webhook intake: signature verification and the payload → events → JSON round trip.
//! The property lives in `carteiro_shared::fuzzing` so `cargo test` runs it on the corpus too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = carteiro_shared::fuzzing::intake_input(data) {
        panic!("{violation}");
    }
});
