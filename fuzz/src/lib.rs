//! The fuzz targets' bodies, shared by the libFuzzer binaries in
//! `fuzz_targets/` (`cargo +nightly fuzz run <target>`) and by the stable
//! regression test `tests/fuzz_regressions.rs`, which includes this file with
//! `#[path]`. It therefore uses nothing but `std` and `tessera`.
//!
//! Each function takes arbitrary bytes, drives one public entry point of the
//! library the way the server does, and returns an [`Outcome`]. Returning at
//! all is the main property; the `assert!`s below are the few invariants the
//! server relies on besides "no panic" (a hostile URL is a client error, a
//! decode returns exactly the planned pixels, a canonical URL is itself a
//! valid request). A failed assertion is a finding, like a crash.

use tessera::codec::{self, jp2, CodecError};
use tessera::iiif::{v2, v3, ApiVersion, ImageRequest};
use tessera::plan::{self, Limits, Plan, Rect, SourceFacts};

/// The fuzz targets, by name (the binaries in `fuzz_targets/`, the folders
/// of seeds under `corpus/` and of regression inputs under `tests/fuzz/`).
pub const TARGETS: [&str; 4] = ["iiif_request", "codec_probe", "codec_decode", "jp2_header"];

/// The largest decode the codec targets allow: small, so that a hostile
/// header claiming a huge image is refused (`TooLarge`) rather than
/// allocated, and every run stays fast.
pub const MAX_DECODE_PIXELS: u64 = 4 << 20;

/// What an entry point made of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The input was refused with an error (the normal fate of fuzz input).
    Rejected,
    /// The input was accepted: parsed and planned, probed, or decoded.
    Accepted,
}

/// Runs `target` (one of [`TARGETS`]) on `data`.
pub fn run(target: &str, data: &[u8]) -> Outcome {
    match target {
        "iiif_request" => iiif_request(data),
        "codec_probe" => codec_probe(data),
        "codec_decode" => codec_decode(data),
        "jp2_header" => jp2_header(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

// ---------------------------------------------------------------------------
// iiif_request
// ---------------------------------------------------------------------------

/// Source sizes a request is planned against: ordinary, tiny, extreme (a
/// JPEG 2000 header may claim up to 2^32 - 1 on a side) and odd scale factors.
fn facts() -> [SourceFacts; 5] {
    [
        SourceFacts { width: 1000, height: 800, scale_factors: vec![1, 2, 4, 8] },
        SourceFacts { width: 1, height: 1, scale_factors: vec![1] },
        SourceFacts { width: 65_535, height: 3, scale_factors: vec![1, 2, 4, 8] },
        SourceFacts { width: u32::MAX, height: u32::MAX, scale_factors: (0..31).map(|l| 1u32 << l).collect() },
        SourceFacts { width: 7, height: 100_003, scale_factors: vec![1, 2] },
    ]
}

/// `region/size/rotation/quality.format` (the path after the identifier):
/// parsed with both grammars, and every request that parses is planned
/// against each of [`facts`] with the default limits.
pub fn iiif_request(data: &[u8]) -> Outcome {
    let Ok(url) = std::str::from_utf8(data) else { return Outcome::Rejected };
    let mut parts = url.splitn(4, '/');
    let (Some(region), Some(size), Some(rotation), Some(qf)) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Outcome::Rejected;
    };
    let limits = Limits::default();
    let mut outcome = Outcome::Rejected;
    for (version, parsed) in [
        (ApiVersion::V2, v2::parse(region, size, rotation, qf)),
        (ApiVersion::V3, v3::parse(region, size, rotation, qf)),
    ] {
        let req = match parsed {
            Ok(req) => req,
            Err(e) => {
                assert!(e.status().is_client_error(), "{version:?} parse of {url:?} answered {}", e.status());
                continue;
            }
        };
        for src in facts() {
            match plan::plan(&src, &req, &limits, version) {
                Ok(p) => {
                    outcome = Outcome::Accepted;
                    check_plan(&src, &req, &p, &limits, version);
                }
                Err(e) => {
                    assert!(
                        e.status().is_client_error(),
                        "{version:?} plan of {url:?} on {src:?} answered {}",
                        e.status()
                    );
                }
            }
        }
    }
    outcome
}

/// What the renderer and the `Link: rel="canonical"` header rely on.
fn check_plan(src: &SourceFacts, req: &ImageRequest, p: &Plan, limits: &Limits, version: ApiVersion) {
    let ctx = || format!("{version:?} {req:?} on {}x{}: {p:?}", src.width, src.height);
    let r = p.region;
    assert!(r.w > 0 && r.h > 0, "empty region: {}", ctx());
    assert!(r.x as u64 + r.w as u64 <= src.width as u64, "region leaves the image: {}", ctx());
    assert!(r.y as u64 + r.h as u64 <= src.height as u64, "region leaves the image: {}", ctx());
    assert!(src.scale_factors.contains(&p.scale) || p.scale == 1, "scale not native: {}", ctx());
    assert_eq!(p.decoded, r.at_scale(p.scale, src.width, src.height), "decoded rectangle: {}", ctx());
    assert!(p.decoded.w as u64 * p.decoded.h as u64 <= limits.max_decode_pixels, "decode limit: {}", ctx());
    assert!(p.scaled_w >= 1 && p.scaled_h >= 1, "empty output: {}", ctx());
    assert!(p.out_w <= limits.max_width && p.out_h <= limits.max_height, "output limit: {}", ctx());
    assert!(p.out_w as u64 * p.out_h as u64 <= limits.max_area, "output area limit: {}", ctx());

    // The canonical form is a request of the same version that plans to the
    // same rectangle and size. (An arbitrary angle is printed with at most six
    // decimals, so its rotated canvas may round differently: only quarter
    // turns are compared exactly.)
    let c: Vec<&str> = p.canonical.splitn(4, '/').collect();
    assert_eq!(c.len(), 4, "canonical {:?}: {}", p.canonical, ctx());
    let again = match version {
        ApiVersion::V2 => v2::parse(c[0], c[1], c[2], c[3]),
        ApiVersion::V3 => v3::parse(c[0], c[1], c[2], c[3]),
    };
    let again =
        again.unwrap_or_else(|e| panic!("canonical {:?} does not parse ({}): {}", p.canonical, e.status(), ctx()));
    if req.rotation.quarter_turns().is_some() {
        let q = plan::plan(src, &again, limits, version)
            .unwrap_or_else(|e| panic!("canonical {:?} does not plan ({}): {}", p.canonical, e.status(), ctx()));
        assert_eq!(
            (q.region, q.scaled_w, q.scaled_h, q.out_w, q.out_h, &q.canonical),
            (p.region, p.scaled_w, p.scaled_h, p.out_w, p.out_h, &p.canonical),
            "canonical {:?} plans differently: {}",
            p.canonical,
            ctx()
        );
    }
}

// ---------------------------------------------------------------------------
// codec_probe
// ---------------------------------------------------------------------------

/// `codec::probe`: the header read of every source format (the format is
/// sniffed from the magic bytes, so one target covers JPEG, PNG and JP2).
pub fn codec_probe(data: &[u8]) -> Outcome {
    match codec::probe(data) {
        Ok(info) => {
            assert!(!info.scale_factors.is_empty() && info.scale_factors[0] == 1, "scale factors {info:?}");
            assert!(info.scale_factors.windows(2).all(|w| w[0] < w[1]), "scale factors {info:?}");
            if let Some((tw, th)) = info.native_tile {
                assert!(tw > 0 && th > 0, "tile size {info:?}");
            }
            Outcome::Accepted
        }
        Err(_) => Outcome::Rejected,
    }
}

// ---------------------------------------------------------------------------
// codec_decode
// ---------------------------------------------------------------------------

/// FNV-1a over the input: picks the region and scale to decode without
/// taking bytes away from the image (the format is sniffed from the first
/// bytes, so a prefix of parameters would get in the way).
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// `codec::probe`, then `codec::decode` as the renderer calls it (the region
/// and scale of a [`plan::plan`] under a small decode limit): a thumbnail of
/// the whole image at the coarsest fitting scale, then a region of at most
/// 512 x 512 picked from a hash of the input, at full resolution. For a tiled
/// JPEG 2000, also one codestream tile at a native scale, as the decoded-tile
/// cache asks for it (`jp2::decode` of the tile's rectangle).
pub fn codec_decode(data: &[u8]) -> Outcome {
    let Ok(info) = codec::probe(data) else { return Outcome::Rejected };
    let src = info.facts();
    if src.width == 0 || src.height == 0 {
        return Outcome::Rejected;
    }
    let limits = Limits { max_decode_pixels: MAX_DECODE_PIXELS, ..Limits::default() };
    let h = fnv(data);
    let (w, ht) = (src.width as u64, src.height as u64);
    let x = (h % w) as u32;
    let y = ((h >> 20) % ht) as u32;
    let rw = 1 + ((h >> 40) % 512) as u32;
    let rh = 1 + ((h >> 50) % 512) as u32;
    let region = format!("{x},{y},{rw},{rh}");
    let requests = [("full", "!64,64"), (region.as_str(), "max")];

    let mut outcome = Outcome::Rejected;
    for (region, size) in requests {
        let req = v3::parse(region, size, "0", "default.png").expect("a valid request");
        let Ok(p) = plan::plan(&src, &req, &limits, ApiVersion::V3) else { continue };
        if let Some(px) = decode_checked(data, &info, p.region, p.scale) {
            assert_eq!((px.0, px.1), (p.decoded.w, p.decoded.h), "decode of {:?} at 1/{}", p.region, p.scale);
            outcome = Outcome::Accepted;
        }
    }

    if let Some((tw, th)) = info.native_tile {
        // decoded.rs: tile (col, row) at 1/scale, `jp2::decode` of its rectangle.
        assert!(tw > 0 && th > 0, "tile size {info:?}");
        let cols = src.width.div_ceil(tw);
        let rows = src.height.div_ceil(th);
        let (col, row) = ((h >> 8) as u32 % cols, (h >> 24) as u32 % rows);
        let scale = info.scale_factors[(h >> 36) as usize % info.scale_factors.len()];
        let rect = Rect { x: col * tw, y: row * th, w: tw.min(src.width - col * tw), h: th.min(src.height - row * th) };
        let want = rect.at_scale(scale, src.width, src.height);
        if want.w as u64 * want.h as u64 <= MAX_DECODE_PIXELS {
            let area = jp2::DecodeArea { x: rect.x, y: rect.y, w: rect.w, h: rect.h };
            if jp2::decode(data, area, scale.trailing_zeros(), MAX_DECODE_PIXELS).is_ok() {
                outcome = Outcome::Accepted;
            }
        }
    }
    outcome
}

/// `codec::decode`, returning the size of what it decoded.
fn decode_checked(data: &[u8], info: &codec::ImageInfo, region: Rect, scale: u32) -> Option<(u32, u32)> {
    match codec::decode(data, info, region, scale, MAX_DECODE_PIXELS) {
        Ok(p) => {
            assert_eq!(p.data().len(), p.stride() * p.height() as usize);
            Some((p.width(), p.height()))
        }
        Err(CodecError::TooLarge { pixels, limit }) => {
            assert!(pixels > limit, "TooLarge {pixels} <= {limit}");
            None
        }
        Err(_) => None,
    }
}

// ---------------------------------------------------------------------------
// jp2_header
// ---------------------------------------------------------------------------

/// The pure-Rust JP2 box and codestream main-header parser (`jp2::sniff`,
/// `jp2::probe`) and the geometry derived from its answer
/// (`Jp2Info::reduced_size`, `Jp2Info::reduced_area`). Never calls OpenJPEG.
pub fn jp2_header(data: &[u8]) -> Outcome {
    let sniffed = jp2::sniff(data);
    let info = match jp2::probe(data) {
        Ok(info) => info,
        Err(_) => return Outcome::Rejected,
    };
    assert!(sniffed.is_some(), "probe accepted data that sniff does not recognise");
    assert_eq!(sniffed, Some(info.container));
    assert!((1..=4).contains(&info.components), "{info:?}");
    assert!(info.levels >= 1, "{info:?}");
    let h = fnv(data);
    for reduce in 0..info.levels.min(33) {
        let (w, ht) = info.reduced_size(reduce);
        assert!(w <= info.width.max(1) && ht <= info.height.max(1), "reduce {reduce} of {info:?}: {w}x{ht}");
        if info.width > 0 && info.height > 0 {
            let x = (h % info.width as u64) as u32;
            let y = ((h >> 32) % info.height as u64) as u32;
            let area = jp2::DecodeArea { x, y, w: info.width - x, h: info.height - y };
            let r = info.reduced_area(area, reduce);
            assert!(
                r.x as u64 + r.w as u64 <= w as u64 && r.y as u64 + r.h as u64 <= ht as u64,
                "{area:?} at {reduce}: {r:?} of {w}x{ht}"
            );
        }
    }
    Outcome::Accepted
}
