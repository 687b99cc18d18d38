//! Fuzz target: `codec::probe` (JPEG, PNG and JPEG 2000 headers).
//! Body in `fuzz/src/lib.rs` (shared with `tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tessera_fuzz::codec_probe(data);
});
