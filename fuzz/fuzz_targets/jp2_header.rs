//! Fuzz target: The JP2 box and codestream header parser: `codec::jp2::sniff`, `codec::jp2::probe` and its geometry.
//! Body in `fuzz/src/lib.rs` (shared with `tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tessera_fuzz::jp2_header(data);
});
