//! Fuzzes the send API's body parser and the provider payload it builds. The property lives in
//! `carteiro_shared::fuzzing::send_input` so `cargo test` runs it on the corpus too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = carteiro_shared::fuzzing::send_input(data) {
        panic!("{violation}");
    }
});
