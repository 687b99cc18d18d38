//! The fuzz targets on the stable toolchain: every input kept under
//! `tests/fuzz/` (a crash or hang once found by `scripts/fuzz.sh`, minimised
//! and saved as `tests/fuzz/<target>-<short-name>`), the committed seeds
//! (`fuzz/seeds/<target>/`), seeds made here with Tessera's own encoders, and
//! deterministic corruptions of them all run through the same bodies as the
//! libFuzzer binaries (`fuzz/src/lib.rs`, included below), which panic on a
//! broken invariant. No nightly toolchain and no libFuzzer needed:
//!
//!     cargo test --test fuzz_regressions

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

use harness::{Outcome, TARGETS};
use tessera::codec::{self, encode, jp2, CodecError};
use tessera::iiif::Format;
use tessera::pixels::{Layout, Pixels};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Files directly under `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    out.sort();
    out
}

/// The target a file under `tests/fuzz/` belongs to, from its name.
fn target_of(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    TARGETS.iter().copied().find(|t| name.strip_prefix(t).is_some_and(|rest| rest.starts_with('-')))
}

/// A small deterministic picture with edges, gradients and (for layouts with
/// alpha) varying transparency.
fn picture(w: u32, h: u32, layout: Layout) -> Pixels {
    let c = layout.channels();
    let mut d = Vec::with_capacity((w * h) as usize * c);
    for y in 0..h {
        for x in 0..w {
            let px = [(x * 255 / w) as u8, (y * 255 / h) as u8, (((x / 4 + y / 4) % 2) * 200) as u8, (x + y) as u8];
            match layout {
                Layout::Gray => d.push(px[0] / 2 + px[1] / 2),
                Layout::GrayAlpha => d.extend_from_slice(&[px[0], px[3]]),
                Layout::Rgb => d.extend_from_slice(&px[..3]),
                Layout::Rgba => d.extend_from_slice(&px),
            }
        }
    }
    Pixels::new(w, h, layout, d).unwrap()
}

fn jp2_seed(p: &Pixels, params: jp2::EncodeParams) -> Vec<u8> {
    let input = jp2::EncodeInput::from_pixels(p);
    jp2::encode(&input, &params).unwrap()
}

/// Valid images of every source format, made with Tessera's encoders: the
/// same kinds of seed `scripts/fuzz.sh` makes with ImageMagick and
/// `opj_compress`, without binary files in the repository.
fn image_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use jp2::{Container, EncodeParams, Progression};
    let rgb = picture(67, 45, Layout::Rgb);
    let mut seeds = vec![
        ("rgb.jpg", encode::encode(&rgb, Format::Jpg, 85).unwrap()),
        ("gray.jpg", encode::encode(&picture(40, 33, Layout::Gray), Format::Jpg, 60).unwrap()),
    ];
    for (name, layout) in [
        ("gray.png", Layout::Gray),
        ("gray-alpha.png", Layout::GrayAlpha),
        ("rgb.png", Layout::Rgb),
        ("rgba.png", Layout::Rgba),
    ] {
        seeds.push((name, encode::encode(&picture(23, 17, layout), Format::Png, 85).unwrap()));
    }
    let base = EncodeParams::default();
    seeds.push(("untiled.jp2", jp2_seed(&rgb, EncodeParams { levels: 4, ..base.clone() })));
    seeds.push((
        "tiled-lossy.jp2",
        jp2_seed(
            &rgb,
            EncodeParams {
                tile_size: Some((32, 32)),
                levels: 3,
                lossless: false,
                rate: Some(10.0),
                layers: 2,
                progression: Progression::Rpcl,
                ..base.clone()
            },
        ),
    ));
    seeds.push((
        "precincts.j2k",
        jp2_seed(
            &picture(40, 30, Layout::Gray),
            EncodeParams {
                levels: 3,
                precincts: Some(vec![(16, 16), (8, 8)]),
                progression: Progression::Cprl,
                container: Container::J2k,
                ..base.clone()
            },
        ),
    ));
    seeds.push((
        "rgba-tiled.jp2",
        jp2_seed(&picture(33, 20, Layout::Rgba), EncodeParams { tile_size: Some((16, 16)), levels: 2, ..base }),
    ));
    seeds
}

/// Deterministic corruptions of `seed`: truncations, bit flips, bytes set to
/// 0x00 / 0xFF, and a run of bytes removed (the kind of damage a half-copied
/// or hostile file has).
fn mutations(seed: &[u8]) -> Vec<Vec<u8>> {
    let n = seed.len();
    let mut out = Vec::new();
    for cut in [
        0,
        1,
        2,
        4,
        8,
        12,
        16,
        24,
        33,
        50,
        64,
        100,
        200,
        n / 4,
        n / 2,
        n * 3 / 4,
        n.saturating_sub(2),
        n.saturating_sub(1),
    ] {
        if cut < n {
            out.push(seed[..cut].to_vec());
        }
    }
    let mut pos = 1usize;
    while pos < n {
        for (i, op) in [0x01u8, 0x80, 0x00, 0xFF].into_iter().enumerate() {
            let mut m = seed.to_vec();
            if i < 2 {
                m[pos] ^= op;
            } else {
                m[pos] = op;
            }
            out.push(m);
        }
        let mut cut = seed.to_vec();
        cut.drain(pos..(pos + 3).min(n));
        out.push(cut);
        // Dense in the headers, sparse in the payload.
        pos += if pos < 256 { 7 } else { 97 };
    }
    out
}

/// Runs `target` on `data`, naming the input if it panics.
fn run(target: &str, name: &str, data: &[u8]) -> Outcome {
    match std::panic::catch_unwind(|| harness::run(target, data)) {
        Ok(o) => o,
        Err(e) => {
            let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("{target} panicked on {name}: {}", msg.unwrap_or_default());
        }
    }
}

#[test]
fn kept_crash_inputs_no_longer_crash() {
    let dir = Path::new(ROOT).join("tests/fuzz");
    let mut replayed = 0;
    for path in files(&dir) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') || name.ends_with(".md") {
            continue;
        }
        let target = target_of(&path).unwrap_or_else(|| {
            panic!("tests/fuzz/{name}: the name must start with a fuzz target and '-': {TARGETS:?}")
        });
        run(target, &name, &std::fs::read(&path).unwrap());
        replayed += 1;
    }
    // Each of them once crashed; none may now. (The folder may be empty.)
    eprintln!("replayed {replayed} kept fuzz inputs from {}", dir.display());
}

#[test]
fn committed_seeds_are_valid_requests() {
    let dir = Path::new(ROOT).join("fuzz/seeds/iiif_request");
    let seeds = files(&dir);
    assert!(!seeds.is_empty(), "no seeds under {}", dir.display());
    for path in &seeds {
        let data = std::fs::read(path).unwrap();
        let name = path.display().to_string();
        // Every seed is a valid request in at least one version.
        assert_eq!(run("iiif_request", &name, &data), Outcome::Accepted, "{name}: {}", String::from_utf8_lossy(&data));
        for (i, m) in mutations(&data).iter().enumerate() {
            run("iiif_request", &format!("{name} mutation {i}"), m);
        }
    }
}

#[test]
fn hostile_requests_are_refused_without_panic() {
    let urls = [
        "",
        "////",
        "full/max/0/default",
        "full/max/0/.jpg",
        "full/max/0/default.",
        "full/max/0/default.jp2",
        "0,0,0,0/max/0/default.jpg",
        "4294967295,4294967295,4294967295,4294967295/max/0/default.jpg",
        "4294967296,0,1,1/max/0/default.jpg",
        "pct:99.9999999,99.9999999,100,100/max/0/default.jpg",
        "pct:0,0,0.0000001,0.0000001/max/0/default.jpg",
        "full/pct:0.0000001/0/default.jpg",
        "full/pct:99999999999999999999999999999/0/default.jpg",
        "full/^pct:1e9/0/default.jpg",
        "full/4294967295,4294967295/0/default.tif",
        "full/^!4294967295,1/0/default.gif",
        "full/^max/0/default.gif",
        "full/^max/45/default.tif",
        "full/!1,1/359.9999999999/default.png",
        "full/max/360.0000001/default.jpg",
        "full/max/-0/default.jpg",
        "full/max/NaN/default.jpg",
        "full/max/inf/default.jpg",
        "full/,/0/default.jpg",
        "full/!,/0/default.jpg",
        "full/^/0/default.jpg",
        "square/^max/!0/bitonal.webp",
        "full/max/0/default.jpg/x",
        "full/max/0/défault.jpg",
        "full/max/0/default.jpg\0",
    ];
    for url in urls {
        run("iiif_request", url, url.as_bytes());
    }
    run("iiif_request", "invalid UTF-8", b"full/max/\xff/default.jpg");
}

#[test]
fn image_seeds_are_accepted_and_their_corruptions_are_refused_cleanly() {
    let mut inputs = 0;
    for (name, seed) in image_seeds() {
        // The seeds must reach every stage, or the targets test nothing.
        assert_eq!(run("codec_probe", name, &seed), Outcome::Accepted, "{name}");
        assert_eq!(run("codec_decode", name, &seed), Outcome::Accepted, "{name}");
        let is_jp2 = jp2::sniff(&seed).is_some();
        if is_jp2 {
            assert_eq!(run("jp2_header", name, &seed), Outcome::Accepted, "{name}");
        }
        for (i, m) in mutations(&seed).iter().enumerate() {
            let label = format!("{name} mutation {i}");
            run("codec_probe", &label, m);
            run("codec_decode", &label, m);
            if is_jp2 {
                run("jp2_header", &label, m);
            }
            inputs += 1;
        }
    }
    assert!(inputs > 1000, "only {inputs} corrupted inputs");
}

/// CRC-32 (ISO-HDLC) as PNG chunks use it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

#[test]
fn headers_claiming_huge_images_are_refused_before_decoding() {
    // PNG: IHDR rewritten to 100000 x 100000 with a valid CRC. The header is
    // read, but the decode limit refuses the image before any allocation.
    let mut png = encode::encode(&picture(23, 17, Layout::Rgb), Format::Png, 85).unwrap();
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let info = codec::probe(&png).unwrap();
    assert_eq!((info.width, info.height), (100_000, 100_000));
    let region = tessera::plan::Rect { x: 0, y: 0, w: 10, h: 10 };
    assert!(matches!(
        codec::decode(&png, &info, region, 1, harness::MAX_DECODE_PIXELS),
        Err(CodecError::TooLarge { .. })
    ));
    assert_eq!(run("codec_decode", "huge PNG", &png), Outcome::Rejected);

    // JPEG 2000: SIZ rewritten to one untiled 200000 x 200000 image. Its
    // code-block bookkeeping alone would take gigabytes: refused by the header
    // parser's codec-memory estimate before OpenJPEG sees it.
    let j2k = image_seeds().into_iter().find(|(n, _)| n.ends_with(".j2k")).unwrap().1;
    let mut huge = j2k.clone();
    for field in [8, 12, 24, 28] {
        // Xsiz, Ysiz, XTsiz, YTsiz
        huge[field..field + 4].copy_from_slice(&200_000u32.to_be_bytes());
    }
    assert!(matches!(jp2::probe(&huge), Err(jp2::Jp2Error::CodecLimit { .. })), "{:?}", jp2::probe(&huge));
    // And 2^31 x 2^31 in the original small tiles: more tiles than the
    // standard allows.
    let mut tiles = j2k.clone();
    tiles[8..12].copy_from_slice(&(1u32 << 31).to_be_bytes());
    tiles[12..16].copy_from_slice(&(1u32 << 31).to_be_bytes());
    assert!(jp2::probe(&tiles).is_err());
    for (name, bad) in [("huge J2K", &huge), ("J2K of 2^31 x 2^31", &tiles)] {
        assert!(codec::probe(bad).is_err(), "{name}");
        for target in ["codec_probe", "codec_decode", "jp2_header"] {
            assert_eq!(run(target, name, bad), Outcome::Rejected, "{target} on {name}");
        }
    }
}
