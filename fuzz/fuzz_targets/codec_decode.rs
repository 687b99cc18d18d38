//! Fuzz target: `codec::probe` then `codec::decode` of planned regions (and a JPEG 2000 tile), under a 4 Mpixel limit.
//! Body in `fuzz/src/lib.rs` (shared with `tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tessera_fuzz::codec_decode(data);
});
