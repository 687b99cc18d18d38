//! Fuzz target: `region/size/rotation/quality.format` through `iiif::v2::parse`, `iiif::v3::parse` and `plan::plan`.
//! Body in `fuzz/src/lib.rs` (shared with `tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tessera_fuzz::iiif_request(data);
});
