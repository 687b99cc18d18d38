//! The JPEG 2000 module against references: decodes of areas and
//! reductions against the same rectangles of whole decodes, every sample
//! precision, sub-sampling and alpha layout, hostile and truncated input
//! (errors, never a panic, within a small memory peak), the stream callbacks
//! called directly, the encoder, and errors that never name paths.

use super::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::OnceLock;

/// A fixed pseudo-random value for each input (a SplitMix-style mixer): the
/// noise of the test pictures as a pure function of position, not a generator.
fn hash(x: u64) -> u64 {
    let mut h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 32)
}

/// Photo-like test content: a few sines plus hash noise, in [0, 1].
fn sample(x: u32, y: u32, c: u32) -> f32 {
    let (fx, fy, fc) = (x as f32, y as f32, c as f32);
    let v = 0.5
        + 0.22 * (fx * 0.043 + fc).sin()
        + 0.15 * (fy * 0.031 + fx * 0.007 * (fc + 1.0)).sin()
        + 0.06 * ((fx + fy) * 0.21).sin();
    let noise = (hash(u64::from(x) | u64::from(y) << 24 | u64::from(c) << 48) % 1000) as f32 / 1000.0 - 0.5;
    (v + 0.08 * noise).clamp(0.0, 1.0)
}

fn image8(w: u32, h: u32, n: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h * n) as usize);
    for y in 0..h {
        for x in 0..w {
            for c in 0..n {
                v.push((sample(x, y, c) * 255.0).round() as u8);
            }
        }
    }
    v
}

fn image16(w: u32, h: u32, n: u32) -> Vec<u16> {
    let mut v = Vec::with_capacity((w * h * n) as usize);
    for y in 0..h {
        for x in 0..w {
            for c in 0..n {
                v.push((sample(x, y, c) * 65535.0).round() as u16);
            }
        }
    }
    v
}

fn layout_of(n: u32) -> Layout {
    match n {
        1 => Layout::Gray,
        2 => Layout::GrayAlpha,
        3 => Layout::Rgb,
        _ => Layout::Rgba,
    }
}

fn to8(v: u16) -> u8 {
    ((u32::from(v) * 255 * 2 + 65535) / (2 * 65535)) as u8
}

struct Fixture {
    name: &'static str,
    data: Vec<u8>,
    width: u32,
    height: u32,
    components: u32,
    precision: u32,
    params: EncodeParams,
    /// The source as 8-bit pixels (16-bit scaled like the decoder does).
    expected: Pixels,
}

fn params() -> EncodeParams {
    EncodeParams::default()
}

fn fixture(name: &'static str, w: u32, h: u32, n: u32, precision: u32, params: EncodeParams) -> Fixture {
    let (data, expected) = if precision > 8 {
        let src = image16(w, h, n);
        let input = EncodeInput { width: w, height: h, components: n, precision, samples: Samples::U16(&src) };
        let data = encode(&input, &params).expect("encode");
        let expected = src.iter().map(|&v| to8(v)).collect();
        (data, expected)
    } else {
        let src = image8(w, h, n);
        let input = EncodeInput { width: w, height: h, components: n, precision, samples: Samples::U8(&src) };
        (encode(&input, &params).expect("encode"), src)
    };
    let expected = Pixels::new(w, h, layout_of(n), expected).expect("pixels");
    Fixture { name, data, width: w, height: h, components: n, precision, params, expected }
}

fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        vec![
            fixture(
                "rgb_tiled_lrcp",
                300,
                200,
                3,
                8,
                EncodeParams { tile_size: Some((64, 64)), levels: 4, ..params() },
            ),
            fixture(
                "rgb_untiled_precincts_rpcl",
                257,
                193,
                3,
                8,
                EncodeParams {
                    levels: 5,
                    progression: Progression::Rpcl,
                    precincts: Some(vec![(64, 64), (32, 32)]),
                    ..params()
                },
            ),
            fixture(
                "rgb_lossy_tiled_rpcl_layers",
                320,
                240,
                3,
                8,
                EncodeParams {
                    tile_size: Some((128, 128)),
                    levels: 5,
                    lossless: false,
                    rate: Some(12.0),
                    layers: 3,
                    progression: Progression::Rpcl,
                    precincts: Some(vec![(128, 128)]),
                    ..params()
                },
            ),
            fixture("gray_tiled", 200, 150, 1, 8, EncodeParams { tile_size: Some((64, 48)), levels: 3, ..params() }),
            fixture("gray16_untiled", 160, 120, 1, 16, EncodeParams { levels: 4, ..params() }),
            fixture(
                "rgb16_lossy_tiled",
                150,
                100,
                3,
                16,
                EncodeParams { tile_size: Some((64, 64)), levels: 3, lossless: false, rate: Some(8.0), ..params() },
            ),
            fixture("rgba_tiled", 130, 90, 4, 8, EncodeParams { tile_size: Some((64, 64)), levels: 3, ..params() }),
            fixture("gray_alpha_untiled", 50, 40, 2, 8, EncodeParams { levels: 3, ..params() }),
            fixture(
                "odd_1025x751_tiled",
                1025,
                751,
                3,
                8,
                EncodeParams { tile_size: Some((256, 256)), levels: 6, ..params() },
            ),
            fixture(
                "tall_60x4000_tiled",
                60,
                4000,
                1,
                8,
                EncodeParams { tile_size: Some((64, 512)), levels: 6, progression: Progression::Rpcl, ..params() },
            ),
            fixture("tall_60x4000_untiled", 60, 4000, 1, 8, EncodeParams { levels: 6, ..params() }),
            fixture("tiny_1x1_rgb", 1, 1, 3, 8, params()),
            fixture("tiny_3x2_gray", 3, 2, 1, 8, params()),
            fixture(
                "raw_j2k_rgb_tiled_rpcl",
                128,
                96,
                3,
                8,
                EncodeParams {
                    tile_size: Some((32, 32)),
                    levels: 3,
                    progression: Progression::Rpcl,
                    container: Container::J2k,
                    ..params()
                },
            ),
            fixture(
                "raw_j2k_gray_lossy_untiled",
                96,
                80,
                1,
                8,
                EncodeParams { levels: 4, lossless: false, rate: Some(6.0), container: Container::J2k, ..params() },
            ),
        ]
    })
}

fn expected_levels(f: &Fixture) -> u32 {
    let (tw, th) = f.params.tile_size.unwrap_or((f.width, f.height));
    let mut l = f.params.levels.clamp(1, 32);
    while l > 1 && (tw.min(th) >> (l - 1)) == 0 {
        l -= 1;
    }
    l
}

fn full(info: &Jp2Info) -> DecodeArea {
    DecodeArea { x: 0, y: 0, w: info.width, h: info.height }
}

fn area(x: u32, y: u32, w: u32, h: u32) -> DecodeArea {
    DecodeArea { x, y, w, h }
}

/// Regions worth checking: corners, odd offsets, tile-crossing, thin strips.
fn regions(f: &Fixture, info: &Jp2Info) -> Vec<DecodeArea> {
    let (w, h) = (f.width, f.height);
    let mut v = vec![
        area(0, 0, w, h),
        area(0, 0, 1, 1),
        area(w - 1, h - 1, 1, 1),
        area(w / 3, h / 4, w.div_ceil(2), h.div_ceil(2)),
    ];
    if w > 2 && h > 2 {
        v.push(area(1, 1, w - 2, h - 2));
    }
    v.push(area(w / 2, 0, w - w / 2, 1));
    v.push(area(0, h / 2, 1, h - h / 2));
    let (tw, th) = (info.tile_width, info.tile_height);
    if info.tiles_x > 1 && info.tiles_y > 1 {
        v.push(area(tw - 5, th - 3, 10.min(w - (tw - 5)), 7.min(h - (th - 3))));
        v.push(area(tw + 3, th + 1, 5, 9.min(h - th - 1)));
    }
    v.retain(|a| a.w > 0 && a.h > 0 && a.x + a.w <= w && a.y + a.h <= h);
    v
}

fn max_abs_diff(a: &Pixels, b: &Pixels) -> u8 {
    assert_eq!((a.width(), a.height(), a.layout()), (b.width(), b.height(), b.layout()));
    a.data().iter().zip(b.data()).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

fn psnr(a: &Pixels, b: &Pixels) -> f64 {
    let mse: f64 = a.data().iter().zip(b.data()).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum::<f64>()
        / a.data().len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

#[test]
fn sniff_recognises_jp2_and_raw_codestreams_only() {
    let f = &fixtures()[0];
    assert_eq!(sniff(&f.data), Some(Container::Jp2));
    let j2k = fixtures().iter().find(|f| f.params.container == Container::J2k).unwrap();
    assert_eq!(sniff(&j2k.data), Some(Container::J2k));
    assert_eq!(sniff(b"\xFF\xD8\xFF\xE0 not jpeg 2000"), None);
    assert_eq!(sniff(b""), None);
    assert_eq!(sniff(&f.data[..8]), None);
}

#[test]
fn probe_reports_the_header_fields_of_every_fixture() {
    for f in fixtures() {
        let info = probe(&f.data).unwrap_or_else(|e| panic!("{}: {e:?}", f.name));
        let levels = expected_levels(f);
        assert_eq!((info.width, info.height), (f.width, f.height), "{}", f.name);
        assert_eq!(info.components, f.components, "{}", f.name);
        assert_eq!(info.bit_depth, f.precision, "{}", f.name);
        assert!(!info.signed, "{}", f.name);
        assert_eq!(info.levels, levels, "{}", f.name);
        assert_eq!(info.layers, f.params.layers, "{}", f.name);
        assert_eq!(info.container, f.params.container, "{}", f.name);
        assert_eq!(info.has_alpha, f.components == 2 || f.components == 4, "{}", f.name);
        assert!(!info.has_icc, "{}", f.name);
        assert_eq!((info.x_offset, info.y_offset), (0, 0));
        match f.params.tile_size {
            Some((tw, th)) => {
                assert_eq!((info.tile_width, info.tile_height), (tw, th), "{}", f.name);
                assert_eq!((info.tiles_x, info.tiles_y), (f.width.div_ceil(tw), f.height.div_ceil(th)), "{}", f.name);
            }
            None => {
                assert_eq!((info.tile_width, info.tile_height), (f.width, f.height), "{}", f.name);
                assert_eq!((info.tiles_x, info.tiles_y), (1, 1), "{}", f.name);
            }
        }
        match &f.params.precincts {
            Some(p) => {
                let mut want = Vec::new();
                for r in 0..levels as usize {
                    let (w, h) = match p.get(r) {
                        Some(&s) => s,
                        None => {
                            let (lw, lh) = p[p.len() - 1];
                            let k = r - (p.len() - 1);
                            ((lw >> k).max(2), (lh >> k).max(2))
                        }
                    };
                    want.push((w, h));
                }
                assert_eq!(info.precinct_sizes, want, "{}", f.name);
            }
            None => assert!(info.precinct_sizes.is_empty(), "{}", f.name),
        }
    }
}

#[test]
fn full_decode_reproduces_the_source_exactly_when_lossless_and_closely_when_lossy() {
    for f in fixtures() {
        let info = probe(&f.data).unwrap();
        let px = decode(&f.data, full(&info), 0, u64::MAX).unwrap_or_else(|e| panic!("{}: {e:?}", f.name));
        assert_eq!(px.layout(), layout_of(f.components), "{}", f.name);
        if f.params.lossless {
            assert!(px == f.expected, "{}: lossless decode differs by {}", f.name, max_abs_diff(&px, &f.expected));
        } else {
            let q = psnr(&px, &f.expected);
            assert!(q > 30.0, "{}: PSNR {q:.1} dB", f.name);
        }
    }
}

#[test]
fn region_at_full_resolution_equals_the_same_rectangle_of_a_full_decode() {
    for f in fixtures() {
        let info = probe(&f.data).unwrap();
        let whole = decode(&f.data, full(&info), 0, u64::MAX).unwrap();
        for a in regions(f, &info) {
            let px = decode(&f.data, a, 0, u64::MAX).unwrap_or_else(|e| panic!("{} {a:?}: {e:?}", f.name));
            let want = whole.crop(a.x, a.y, a.w, a.h);
            assert!(px == want, "{} {a:?}: differs by {}", f.name, max_abs_diff(&px, &want));
        }
    }
}

#[test]
fn region_at_each_reduction_equals_the_mapped_rectangle_of_a_reduced_full_decode() {
    for f in fixtures() {
        let info = probe(&f.data).unwrap();
        for r in 1..info.levels {
            let whole = decode(&f.data, full(&info), r, u64::MAX).unwrap_or_else(|e| panic!("{} r{r}: {e:?}", f.name));
            assert_eq!((whole.width(), whole.height()), info.reduced_size(r), "{} r{r}", f.name);
            assert_eq!(
                (whole.width(), whole.height()),
                (f.width.div_ceil(1 << r), f.height.div_ceil(1 << r)),
                "{} r{r}",
                f.name
            );
            for a in regions(f, &info) {
                let m = info.reduced_area(a, r);
                let got = decode(&f.data, a, r, u64::MAX);
                if m.w == 0 || m.h == 0 {
                    assert!(matches!(got, Err(Jp2Error::InvalidRegion)), "{} r{r} {a:?}: {got:?}", f.name);
                    continue;
                }
                let px = got.unwrap_or_else(|e| panic!("{} r{r} {a:?}: {e:?}", f.name));
                let want = whole.crop(m.x, m.y, m.w, m.h);
                assert!(px == want, "{} r{r} {a:?}: differs by {}", f.name, max_abs_diff(&px, &want));
            }
        }
    }
}

#[test]
fn adjacent_areas_at_a_reduction_tile_the_reduced_image_exactly() {
    let f = fixtures().iter().find(|f| f.name == "odd_1025x751_tiled").unwrap();
    let info = probe(&f.data).unwrap();
    let r = 2;
    let whole = decode(&f.data, full(&info), r, u64::MAX).unwrap();
    let (mut covered_w, mut covered_h) = (0, 0);
    for (i, x) in (0..f.width).step_by(300).enumerate() {
        let w = 300.min(f.width - x);
        let m = info.reduced_area(area(x, 0, w, 1), r);
        assert_eq!(m.x, covered_w, "column tile {i}");
        covered_w += m.w;
    }
    for y in (0..f.height).step_by(200) {
        let h = 200.min(f.height - y);
        let m = info.reduced_area(area(0, y, 1, h), r);
        assert_eq!(m.y, covered_h);
        covered_h += m.h;
    }
    assert_eq!((covered_w, covered_h), (whole.width(), whole.height()));
}

#[test]
fn sixteen_bit_samples_are_scaled_to_eight_bits_by_rounding() {
    // Bit-replicated values come back exactly; others round to nearest.
    let (w, h) = (64u32, 32u32);
    let src: Vec<u16> =
        (0..w * h).map(|i| if i < 256 { (i as u16) * 257 } else { (hash(u64::from(i)) & 0xFFFF) as u16 }).collect();
    let input = EncodeInput { width: w, height: h, components: 1, precision: 16, samples: Samples::U16(&src) };
    let data = encode(&input, &EncodeParams { levels: 3, ..params() }).unwrap();
    let info = probe(&data).unwrap();
    assert_eq!(info.bit_depth, 16);
    let px = decode(&data, full(&info), 0, u64::MAX).unwrap();
    for (i, (&got, &v)) in px.data().iter().zip(&src).enumerate() {
        let want = (f64::from(v) * 255.0 / 65535.0).round() as u8;
        assert_eq!(got, want, "sample {i} = {v}");
        if i < 256 {
            assert_eq!(got as usize, i);
        }
    }
}

#[test]
fn low_precision_samples_are_stretched_to_the_full_8_bit_range() {
    let src: Vec<u8> = (0..64).map(|i| (i % 16) as u8).collect();
    let input = EncodeInput { width: 8, height: 8, components: 1, precision: 4, samples: Samples::U8(&src) };
    let data = encode(&input, &EncodeParams { levels: 2, ..params() }).unwrap();
    let info = probe(&data).unwrap();
    assert_eq!(info.bit_depth, 4);
    let px = decode(&data, full(&info), 0, u64::MAX).unwrap();
    for (&got, &v) in px.data().iter().zip(&src) {
        assert_eq!(got, v * 17);
    }
}

#[test]
fn small_area_of_a_tiled_image_decodes_from_the_buffer() {
    // The jpeg2k crate's memory stream returned positions from its skip
    // callback, so this failed with "Stream too short".
    let f = fixtures().iter().find(|f| f.name == "odd_1025x751_tiled").unwrap();
    let info = probe(&f.data).unwrap();
    assert!(info.tiles_x * info.tiles_y > 4);
    for a in [area(600, 520, 16, 16), area(1000, 700, 25, 51), area(250, 250, 12, 12)] {
        let px = decode(&f.data, a, 0, u64::MAX).unwrap();
        assert!(px == f.expected.crop(a.x, a.y, a.w, a.h), "{a:?}");
    }
}

#[test]
fn area_outside_the_image_or_empty_is_an_invalid_region() {
    let f = &fixtures()[0];
    for a in [
        area(0, 0, 0, 10),
        area(0, 0, 10, 0),
        area(299, 0, 2, 1),
        area(0, 199, 1, 2),
        area(u32::MAX, 0, 2, 2),
        area(300, 0, 1, 1),
    ] {
        assert!(matches!(decode(&f.data, a, 0, u64::MAX), Err(Jp2Error::InvalidRegion)), "{a:?}");
    }
    // One pixel at an odd column vanishes at reduce 1.
    assert!(matches!(decode(&f.data, area(1, 1, 1, 1), 1, u64::MAX), Err(Jp2Error::InvalidRegion)));
}

#[test]
fn reduction_beyond_the_available_levels_is_refused() {
    let f = &fixtures()[0];
    let info = probe(&f.data).unwrap();
    assert!(decode(&f.data, full(&info), info.levels - 1, u64::MAX).is_ok());
    match decode(&f.data, full(&info), info.levels, u64::MAX) {
        Err(Jp2Error::InvalidReduce { reduce, levels }) => assert_eq!((reduce, levels), (info.levels, info.levels)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn output_over_max_pixels_is_refused_before_decoding() {
    let f = &fixtures()[0];
    match decode(&f.data, area(0, 0, 300, 200), 0, 59_999) {
        Err(Jp2Error::TooLarge { pixels, limit }) => assert_eq!((pixels, limit), (60_000, 59_999)),
        other => panic!("{other:?}"),
    }
    assert!(decode(&f.data, area(0, 0, 300, 200), 1, 15_000).is_ok());
    // Checked before decoding: fails the same on a header-only stream.
    let cut = &f.data[..f.data.len() / 2];
    assert!(matches!(decode(cut, area(0, 0, 300, 200), 0, 10), Err(Jp2Error::TooLarge { .. })));
}

#[test]
fn rgba_and_gray_alpha_keep_their_alpha_channel() {
    for name in ["rgba_tiled", "gray_alpha_untiled"] {
        let f = fixtures().iter().find(|f| f.name == name).unwrap();
        let info = probe(&f.data).unwrap();
        assert!(info.has_alpha);
        let px = decode(&f.data, area(3, 5, 20, 11), 0, u64::MAX).unwrap();
        assert!(px.layout().has_alpha());
        assert!(px == f.expected.crop(3, 5, 20, 11));
    }
}

/// sYCC 4:2:0 planes for `w x h`, lossless, with the RGB the decoder must produce.
fn sycc_420(w: u32, h: u32, container: Container, declare: bool) -> (Vec<u8>, Pixels) {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let y: Vec<i32> = (0..h).flat_map(|y| (0..w).map(move |x| (sample(x, y, 0) * 255.0) as i32)).collect();
    let cb: Vec<i32> = (0..ch).flat_map(|y| (0..cw).map(move |x| (sample(x * 2, y * 2, 1) * 255.0) as i32)).collect();
    let cr: Vec<i32> = (0..ch).flat_map(|y| (0..cw).map(move |x| (sample(x * 2, y * 2, 2) * 255.0) as i32)).collect();
    let plane =
        |dx, data: &Vec<i32>| EncodePlane { dx, dy: dx, precision: 8, signed: false, alpha: false, data: data.clone() };
    let planes = [plane(1, &y), plane(2, &cb), plane(2, &cr)];
    let colour = if declare { opj::COLOR_SPACE::OPJ_CLRSPC_SYCC } else { opj::COLOR_SPACE::OPJ_CLRSPC_UNSPECIFIED };
    let params = EncodeParams { levels: 3, tile_size: Some((32, 32)), container, ..params() };
    let data = encode_planes(w, h, &planes, colour, false, &params, 0).unwrap();
    let mut rgb = Vec::new();
    for yy in 0..h as usize {
        for xx in 0..w as usize {
            let ci = (yy / 2) * cw as usize + xx / 2;
            let mut rows = vec![vec![y[yy * w as usize + xx]], vec![cb[ci]], vec![cr[ci]]];
            sycc_to_rgb_row(&mut rows, 8);
            rgb.extend(rows.iter().map(|r| r[0] as u8));
        }
    }
    (data, Pixels::new(w, h, Layout::Rgb, rgb).unwrap())
}

#[test]
fn subsampled_sycc_is_upsampled_and_converted_to_rgb() {
    for (container, declare) in [(Container::Jp2, true), (Container::J2k, false)] {
        let (data, want) = sycc_420(75, 49, container, declare);
        let info = probe(&data).unwrap();
        assert_eq!(info.components, 3);
        let px = decode(&data, full(&info), 0, u64::MAX).unwrap();
        assert_eq!(px.layout(), Layout::Rgb);
        assert!(px == want, "{container:?}: differs by {}", max_abs_diff(&px, &want));
        for r in 0..info.levels {
            let whole = decode(&data, full(&info), r, u64::MAX).unwrap();
            assert_eq!((whole.width(), whole.height()), info.reduced_size(r));
            for a in
                [area(1, 1, 7, 5), area(33, 17, 30, 31), area(74, 48, 1, 1), area(0, 0, 75, 49), area(31, 0, 3, 49)]
            {
                let m = info.reduced_area(a, r);
                if m.w == 0 || m.h == 0 {
                    continue;
                }
                let px = decode(&data, a, r, u64::MAX).unwrap();
                assert!(px == whole.crop(m.x, m.y, m.w, m.h), "{container:?} r{r} {a:?}");
            }
        }
    }
}

#[test]
fn signed_components_are_offset_into_the_unsigned_range() {
    let data: Vec<i32> = vec![-128, -1, 0, 127];
    let planes =
        [Plane { data: &data, w: 4, h: 1, x0: 0, y0: 0, dx: 1, dy: 1, precision: 8, signed: true, alpha: false }];
    let px = planes_to_pixels(&planes, false, OutputRect { x0: 0, y0: 0, w: 4, h: 1 }).unwrap();
    assert_eq!(px.data(), &[0, 127, 128, 255]);
    // And through the codec.
    let enc = [EncodePlane { dx: 1, dy: 1, precision: 8, signed: true, alpha: false, data: data.clone() }];
    let file =
        encode_planes(4, 1, &enc, opj::COLOR_SPACE::OPJ_CLRSPC_GRAY, false, &EncodeParams { levels: 1, ..params() }, 0)
            .unwrap();
    let info = probe(&file).unwrap();
    assert!(info.signed);
    assert_eq!(decode(&file, full(&info), 0, u64::MAX).unwrap().data(), &[0, 127, 128, 255]);
}

#[test]
fn conversion_upsamples_by_repetition_relative_to_absolute_coordinates() {
    // A 2x-subsampled plane whose first sample is at absolute column 3
    // (reference columns 6..8) seen from an output starting at column 7.
    let data: Vec<i32> = vec![10, 20, 30, 40];
    let luma = vec![0i32; 5];
    let planes = [
        Plane { data: &luma, w: 5, h: 1, x0: 7, y0: 0, dx: 1, dy: 1, precision: 8, signed: false, alpha: false },
        Plane { data: &data, w: 4, h: 1, x0: 3, y0: 0, dx: 2, dy: 1, precision: 8, signed: false, alpha: false },
    ];
    let px = planes_to_pixels(&planes, false, OutputRect { x0: 7, y0: 0, w: 5, h: 1 }).unwrap();
    let alpha: Vec<u8> = px.data().chunks(2).map(|p| p[1]).collect();
    assert_eq!(alpha, vec![10, 20, 20, 30, 30]);
}

#[test]
fn truncated_data_is_an_error_never_a_panic() {
    for name in
        ["rgb_tiled_lrcp", "rgb_untiled_precincts_rpcl", "raw_j2k_rgb_tiled_rpcl", "rgb_lossy_tiled_rpcl_layers"]
    {
        let f = fixtures().iter().find(|f| f.name == name).unwrap();
        let len = f.data.len();
        let mut cuts: Vec<usize> = (0..300.min(len)).collect();
        cuts.extend((300..len).step_by((len / 120).max(1)));
        cuts.push(len - 1);
        cuts.push(len - 2);
        let mut errors = 0;
        for &cut in &cuts {
            let data = &f.data[..cut];
            let probed = probe(data);
            let a = area(0, 0, f.width, f.height);
            match decode(data, a, 0, u64::MAX) {
                Ok(px) => {
                    assert!(probed.is_ok());
                    assert_eq!((px.width(), px.height()), (f.width, f.height));
                }
                Err(e) => {
                    errors += 1;
                    assert!(
                        matches!(e, Jp2Error::Truncated { .. } | Jp2Error::Corrupt { .. }),
                        "{name} cut at {cut}: {e:?}"
                    );
                }
            }
            let _ = decode(data, area(f.width / 2, f.height / 2, 9, 9), 1, u64::MAX);
        }
        // Only cuts in the last bytes (EOC) may still decode.
        assert!(errors + 2 >= cuts.len(), "{name}: {errors} errors for {} cuts", cuts.len());
    }
}

#[test]
fn truncation_inside_the_data_is_reported_as_truncated() {
    let f = fixtures().iter().find(|f| f.name == "rgb_tiled_lrcp").unwrap();
    let data = &f.data[..f.data.len() * 2 / 3];
    let e = decode(data, area(0, 0, f.width, f.height), 0, u64::MAX).unwrap_err();
    assert!(matches!(e, Jp2Error::Truncated { .. }), "{e:?}");
    assert_eq!(e.to_string(), "JPEG 2000 data is truncated");
}

#[test]
fn random_byte_flips_give_errors_or_pixels_never_a_panic() {
    let mut rng = SmallRng::seed_from_u64(0x5EED_1234_ABCD_0001);
    let small = [
        fixture("flip_rgb_tiled", 64, 48, 3, 8, EncodeParams { tile_size: Some((32, 32)), levels: 3, ..params() }),
        fixture(
            "flip_lossy_rpcl",
            64,
            48,
            3,
            8,
            EncodeParams {
                levels: 4,
                lossless: false,
                rate: Some(10.0),
                layers: 2,
                progression: Progression::Rpcl,
                precincts: Some(vec![(32, 32)]),
                ..params()
            },
        ),
        fixture(
            "flip_j2k_gray16",
            40,
            30,
            1,
            16,
            EncodeParams { tile_size: Some((16, 16)), levels: 2, container: Container::J2k, ..params() },
        ),
    ];
    let (mut ok, mut err) = (0, 0);
    for f in &small {
        for variant in 0..120 {
            let mut data = f.data.clone();
            let flips = rng.random_range(1..=4);
            for _ in 0..flips {
                // Bias towards the headers, where a flip changes the most.
                let at = rng.random_range(0..if variant % 2 == 0 { data.len().min(260) } else { data.len() });
                data[at] ^= 1 << rng.random_range(0..8);
            }
            let _ = probe(&data);
            for (a, r) in [(area(0, 0, f.width, f.height), 0), (area(5, 7, 20, 13), 1)] {
                match decode(&data, a, r, 1 << 22) {
                    Ok(px) => {
                        ok += 1;
                        assert!(px.width() > 0 && px.height() > 0);
                    }
                    Err(_) => err += 1,
                }
            }
        }
    }
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
}

/// A header as `parse_codestream` would accept it: one untiled component
/// of `side × side` with 1×1 precincts (PPx = PPy = 0) at every level.
fn header_with_unit_precincts(side: u32, decompositions: u32) -> Header {
    let coding =
        Coding { decompositions, cblk_w: 6, cblk_h: 6, precincts: Some(vec![(0, 0); decompositions as usize + 1]) };
    Header {
        container: Container::J2k,
        x0: 0,
        y0: 0,
        x1: side,
        y1: side,
        tx0: 0,
        ty0: 0,
        tdx: side,
        tdy: side,
        comps: vec![CompHeader { precision: 8, signed: false, dx: 1, dy: 1, coding }],
        layers: 1,
        colour: ColourSpec::None,
        cdef_alpha: None,
        palette: false,
        tile_parts: Vec::new(),
        progression: 0,
        poc: false,
        sop: false,
        eph: false,
        first_sot: None,
    }
}

#[test]
fn codec_memory_estimate_saturates_instead_of_wrapping() {
    // 2^31-1 square with 1×1 precincts: about 2^62 code-blocks and as many
    // precincts at resolution 0, times 400 and 200 bytes: beyond u64.
    // Unchecked, this wrapped to a small number (or panicked with
    // overflow checks on).
    let side = i32::MAX as u32;
    let hostile = header_with_unit_precincts(side, 0);
    let blocks = (u128::from(side) + 1) * (u128::from(side) + 1);
    assert!(blocks * u128::from(CODE_BLOCK_BYTES) > u128::from(u64::MAX), "the product must wrap u64");
    let (tables, tile) = hostile.codec_memory();
    assert_eq!(tile, u64::MAX);
    assert!(tables < MAX_CODEC_MEMORY);
    let e = hostile.check_codec_memory(MAX_CODEC_MEMORY).unwrap_err();
    assert!(matches!(e, Jp2Error::CodecLimit { what: "tile bookkeeping", needed: u64::MAX, .. }), "{e:?}");
    // With levels too, and many components (every sum saturates).
    let mut many = header_with_unit_precincts(side, 32);
    many.comps = vec![many.comps[0].clone(); 16384];
    assert_eq!(many.codec_memory().1, u64::MAX);
    assert!(many.check_codec_memory(MAX_CODEC_MEMORY).is_err());
    // A small image with the same coding is still admitted.
    assert!(header_with_unit_precincts(64, 2).check_codec_memory(MAX_CODEC_MEMORY).is_ok());
}

/// A small untiled codestream with its SIZ patched to claim `size x size`
/// pixels in tiles of `tile` (untiled when `tile == size`).
fn patched_siz(size: u32, tile: u32) -> Vec<u8> {
    let src = image8(64, 64, 1);
    let input = EncodeInput { width: 64, height: 64, components: 1, precision: 8, samples: Samples::U8(&src) };
    let mut data = encode(&input, &EncodeParams { levels: 3, container: Container::J2k, ..params() }).unwrap();
    for (at, v) in [(8, size), (12, size), (24, tile), (28, tile)] {
        data[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    data
}

#[test]
fn hostile_header_claiming_100000_square_is_refused_or_fails_cleanly() {
    let untiled = patched_siz(100_000, 100_000);
    let info_err = probe(&untiled).unwrap_err();
    assert!(matches!(info_err, Jp2Error::CodecLimit { .. }), "{info_err:?}");
    let started = std::time::Instant::now();
    let e = decode(&untiled, area(0, 0, 64, 64), 0, 1 << 20).unwrap_err();
    assert!(matches!(e, Jp2Error::CodecLimit { .. }), "{e:?}");
    assert!(started.elapsed().as_millis() < 100);

    // Tiled 1024: admitted (9604 tiles); OpenJPEG then fails on the
    // mismatched data, or decodes garbage, but stays within bounds.
    let tiled = patched_siz(100_000, 1024);
    let info = probe(&tiled).unwrap();
    assert_eq!((info.width, info.tiles_x, info.tiles_y), (100_000, 98, 98));
    let _ = decode(&tiled, area(0, 0, 64, 64), 0, 1 << 20);
    let _ = decode(&tiled, area(50_000, 50_000, 64, 64), 2, 1 << 20);

    // Too many tiles for the standard.
    assert!(matches!(probe(&patched_siz(100_000, 64)), Err(Jp2Error::Corrupt { .. })));
    // Coordinates OpenJPEG cannot address.
    assert!(matches!(probe(&patched_siz(3_000_000_000, 1 << 30)), Err(Jp2Error::Unsupported(_))));
}

/// Peak resident memory of this process, in KiB (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
#[ignore = "run in a child process by hostile_header_decode_stays_within_a_small_memory_peak"]
fn hostile_memory_child() {
    let Some(mode) = std::env::var_os("TESSERA_JP2_MEMORY_CHILD") else { return };
    let limit = if mode == "nolimit" { u64::MAX } else { MAX_CODEC_MEMORY };
    let before = peak_rss_kib().unwrap_or(0);
    for data in [patched_siz(100_000, 100_000), patched_siz(100_000, 1024)] {
        let r = decode_with_limit(&data, &Present, area(0, 0, 64, 64), 0, 1 << 20, limit);
        println!("RESULT={:?}", r.map(|p| (p.width(), p.height())));
    }
    println!("PEAK_BEFORE_KIB={before}");
    println!("PEAK_KIB={}", peak_rss_kib().unwrap_or(0));
}

#[test]
fn hostile_header_decode_stays_within_a_small_memory_peak() {
    if peak_rss_kib().is_none() {
        return; // not Linux
    }
    let crate_path = module_path!().split_once("::").map_or("", |(_, rest)| rest);
    let name = format!("{crate_path}::hostile_memory_child");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name.as_str(), "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("TESSERA_JP2_MEMORY_CHILD", "limit")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let peak: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PEAK_KIB="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("child said: {stdout}"));
    // The tiled variant's 9604 tile headers cost ~70 MB inside OpenJPEG;
    // the untiled one is refused before OpenJPEG allocates anything.
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB\n{stdout}");
}

#[test]
fn memory_stream_callbacks_follow_openjpeg_semantics() {
    let bytes: Vec<u8> = (0..10).collect();
    let mut src = MemSource {
        data: &bytes,
        pos: 0,
        hit_end: false,
        need: &crate::codec::Present,
        failed: None,
        spare: Vec::new(),
        filler: Vec::new(),
    };
    let user = (&mut src as *mut MemSource).cast::<c_void>();
    let mut buf = [0u8; 8];
    // SAFETY (test): `user` points at `src` for the duration of these
    // calls and `buf` has room for the requested bytes.
    unsafe {
        assert_eq!(source_read(buf.as_mut_ptr().cast(), 4, user), 4);
        assert_eq!(&buf[..4], &[0, 1, 2, 3]);
        assert_eq!(source_skip(3, user), 3, "skip returns a count");
        assert_eq!(source_read(buf.as_mut_ptr().cast(), 8, user), 3, "short read at the end");
        assert_eq!(&buf[..3], &[7, 8, 9]);
        assert_eq!(source_read(buf.as_mut_ptr().cast(), 8, user), usize::MAX, "-1 at the end, never 0");
        assert_eq!(source_skip(1, user), -1);
        assert_eq!(source_seek(2, user), 1);
        assert_eq!(source_skip(100, user), 8, "skip stops at the end");
        assert_eq!(source_seek(10, user), 1, "seek to the end is allowed");
        assert_eq!(source_seek(11, user), 0, "seek past the end is refused");
        assert_eq!(source_seek(-1, user), 0);
    }
    assert!(src.hit_end);

    let mut sink = VecSink::default();
    let user = (&mut sink as *mut VecSink).cast::<c_void>();
    let mut data = *b"abcdef";
    // SAFETY (test): as above.
    unsafe {
        assert_eq!(sink_skip(2, user), 2);
        assert_eq!(sink_write(data.as_mut_ptr().cast(), 6, user), 6);
        assert_eq!(sink_seek(0, user), 1);
        assert_eq!(sink_write(data.as_mut_ptr().cast(), 2, user), 2);
    }
    assert_eq!(sink.buf, b"ababcdef");
}

#[test]
fn decoding_from_several_threads_at_once_gives_identical_results() {
    let f = fixtures().iter().find(|f| f.name == "rgb_lossy_tiled_rpcl_layers").unwrap();
    let want = decode(&f.data, area(10, 20, 200, 150), 1, u64::MAX).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..5).map(|_| decode(&f.data, area(10, 20, 200, 150), 1, u64::MAX).unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for px in h.join().unwrap() {
                assert!(px == want);
            }
        }
    });
}

#[test]
fn encoder_rejects_inconsistent_input() {
    let px = [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 200];
    let good = EncodeInput { width: 2, height: 2, components: 3, precision: 8, samples: Samples::U8(&px) };
    assert!(encode(&good, &params()).is_ok());
    let bad = [
        EncodeInput { components: 5, ..good },
        EncodeInput { components: 0, ..good },
        EncodeInput { width: 3, ..good },
        EncodeInput { precision: 9, ..good },
        EncodeInput { width: 0, ..good },
        EncodeInput { precision: 4, ..good },
    ];
    for input in &bad {
        assert!(matches!(encode(input, &params()), Err(Jp2Error::InvalidInput(_))), "{input:?}");
    }
    for p in [
        EncodeParams { layers: 0, ..params() },
        EncodeParams { precincts: Some(vec![(48, 64)]), ..params() },
        EncodeParams { tile_size: Some((0, 8)), ..params() },
        EncodeParams { lossless: false, rate: Some(0.5), ..params() },
    ] {
        assert!(matches!(encode(&good, &p), Err(Jp2Error::InvalidInput(_))), "{p:?}");
    }
}

#[test]
fn lossy_encoding_follows_the_requested_rate() {
    let (w, h) = (256u32, 256u32);
    let src = image8(w, h, 3);
    let input = EncodeInput { width: w, height: h, components: 3, precision: 8, samples: Samples::U8(&src) };
    let lossless = encode(&input, &params()).unwrap();
    let lossy = encode(&input, &EncodeParams { lossless: false, rate: Some(20.0), ..params() }).unwrap();
    let raw = (w * h * 3) as usize;
    assert!(lossy.len() < raw / 15, "{} bytes", lossy.len());
    assert!(lossy.len() < lossless.len() / 2);
}

#[test]
fn errors_never_mention_paths_or_openjpeg_text() {
    let f = fixtures().iter().find(|f| f.name == "rgb_tiled_lrcp").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret-name.jp2");
    std::fs::write(&path, &f.data[..f.data.len() / 2]).unwrap();
    let data = std::fs::read(&path).unwrap();
    let e = decode(&data, area(0, 0, f.width, f.height), 0, u64::MAX).unwrap_err();
    let text = e.to_string();
    assert!(!text.contains("secret-name") && !text.contains('/'), "{text}");
    assert!(e.detail().is_some_and(|d| !d.is_empty()), "{e:?}");
    let mut flipped = f.data.clone();
    flipped[60] ^= 0xFF;
    if let Err(e) = decode(&flipped, area(0, 0, 8, 8), 0, u64::MAX) {
        assert!(!e.to_string().contains('/'));
    }
}

/// Input that is all there but asks to be treated as remote, so that the
/// decoder takes the paths a master read by range takes.
struct AsIfRemote;

impl Need for AsIfRemote {
    fn need(&self, _ranges: &[(u64, u64)]) -> Result<(), CodecError> {
        Ok(())
    }
    fn is_remote(&self) -> bool {
        true
    }
}

#[test]
fn a_reduced_decode_from_the_resolution_prefix_equals_the_whole_file_decode() {
    let (w, h) = (1100, 900);
    for (progression, precincts, layout) in [
        (Progression::Rpcl, Some(vec![(256, 256), (128, 128), (64, 64)]), 3),
        (Progression::Rlcp, None, 3),
        (Progression::Rpcl, Some(vec![(128, 128)]), 1),
    ] {
        let p = EncodeParams {
            levels: 6,
            lossless: false,
            rate: Some(12.0),
            layers: 4,
            progression,
            precincts,
            ..EncodeParams::default()
        };
        let pixels = image8(w, h, layout);
        let input =
            EncodeInput { width: w, height: h, samples: Samples::U8(&pixels), components: layout, precision: 8 };
        // Without markers, and with SOP and EPH (which OpenJPEG checks on
        // every packet it skips).
        for markers in [0u8, 0x06] {
            let data = encode_marked(&input, &p, markers).unwrap();
            let header = Header::parse(&data).unwrap();
            assert_eq!((header.sop, header.eph), (markers != 0, markers != 0));
            for reduce in 1..6 {
                let end = prefix::resolution_prefix(&header, &data, &Present, reduce).unwrap();
                let (end, _) = end.expect("PLT and a resolution-first order give a prefix");
                assert!(
                    end < data.len() as u64,
                    "{progression:?} reduce {reduce}: the prefix is shorter than the file"
                );
                let whole = decode(&data, area(0, 0, w, h), reduce, u64::MAX).unwrap();
                let cut = decode_with(&data, &AsIfRemote, area(0, 0, w, h), reduce, u64::MAX).unwrap();
                assert_eq!(whole.data(), cut.data(), "{progression:?} reduce {reduce} markers {markers}: same pixels");
                let part = decode_with(&data, &AsIfRemote, area(300, 200, 400, 300), reduce, u64::MAX).unwrap();
                let whole_part = decode(&data, area(300, 200, 400, 300), reduce, u64::MAX).unwrap();
                assert_eq!(
                    whole_part.data(),
                    part.data(),
                    "{progression:?} reduce {reduce} markers {markers}: a region"
                );
            }
            // The lowest resolutions take a small part of the file.
            let (end, _) = prefix::resolution_prefix(&header, &data, &Present, 4).unwrap().unwrap();
            assert!(end * 5 < data.len() as u64, "{progression:?}: resolutions 0-1 take {end} of {} bytes", data.len());
        }
    }
}

#[test]
fn layer_first_codestreams_and_files_without_plt_give_no_prefix() {
    let pixels = image8(512, 512, 3);
    let input = EncodeInput { width: 512, height: 512, samples: Samples::U8(&pixels), components: 3, precision: 8 };
    let lrcp = encode(&input, &EncodeParams { layers: 3, ..EncodeParams::default() }).unwrap();
    let header = Header::parse(&lrcp).unwrap();
    assert_eq!(prefix::resolution_prefix(&header, &lrcp, &Present, 2).unwrap(), None);
    let tiled = encode(
        &input,
        &EncodeParams { tile_size: Some((256, 256)), progression: Progression::Rpcl, ..EncodeParams::default() },
    )
    .unwrap();
    let header = Header::parse(&tiled).unwrap();
    assert_eq!(prefix::resolution_prefix(&header, &tiled, &Present, 2).unwrap(), None);
    assert!(!header.tile_parts.is_empty(), "tiled files are written with a TLM index");
}

#[test]
fn a_reduced_tiled_decode_reading_only_each_tiles_resolution_prefix_equals_the_whole_file_decode() {
    let (w, h) = (1500, 1100);
    for (precincts, layers) in [(None, 2), (Some(vec![(128, 128), (64, 64)]), 4)] {
        let p = EncodeParams {
            tile_size: Some((512, 512)),
            levels: 5,
            lossless: false,
            rate: Some(10.0),
            layers,
            progression: Progression::Rpcl,
            precincts,
            ..EncodeParams::default()
        };
        let pixels = image8(w, h, 3);
        let input = EncodeInput { width: w, height: h, samples: Samples::U8(&pixels), components: 3, precision: 8 };
        for markers in [0u8, 0x02, 0x04, 0x06] {
            let data = encode_marked(&input, &p, markers).unwrap();
            let header = Header::parse(&data).unwrap();
            let parts = header.tile_parts_in(0, 0, w, h).unwrap();
            assert_eq!(parts.len(), 9, "a TLM entry for each of the 3×3 tiles");
            for reduce in 0..5 {
                let (needed, spare) = prefix::tile_prefixes(&header, &data, &Present, &parts, reduce).unwrap();
                let kept: u64 = needed.iter().map(|(a, b)| b - a).sum();
                if reduce >= 2 {
                    assert!(kept * 3 < data.len() as u64, "reduce {reduce}: {kept} of {} bytes needed", data.len());
                    assert!(!spare.is_empty());
                }
                for a in [area(0, 0, w, h), area(600, 300, 700, 500), area(1024, 1024, 476, 76)] {
                    let whole = decode(&data, a, reduce, u64::MAX).unwrap();
                    let cut = decode_with(&data, &AsIfRemote, a, reduce, u64::MAX).unwrap();
                    assert_eq!(
                        whole.data(),
                        cut.data(),
                        "{a:?} at reduce {reduce}, markers {markers:#x}: the same pixels from the prefixes"
                    );
                }
            }
        }
    }
}

#[test]
fn spare_bytes_are_the_filler_repeated_from_the_range_start_at_any_length_and_phase() {
    let pattern = [0xFF, 0x91, 0x00, 0x04, 0x00, 0x07, 0x00, 0xFF, 0x92];
    for len in [0usize, 1, 5, 9, 10, 17, 18, 100, 4096, 100_003] {
        for phase in 0..pattern.len() {
            let mut out = vec![0xAAu8; len];
            super::ffi::fill_periodic(&mut out, &pattern, phase);
            let want: Vec<u8> = (0..len).map(|i| pattern[(phase + i) % pattern.len()]).collect();
            assert_eq!(out, want, "len {len}, phase {phase}");
        }
    }
}

/// Pages of `mapped` that this process has mapped in (`Rss` of its line in
/// `/proc/self/smaps`), in bytes.
#[cfg(target_os = "linux")]
fn resident_bytes_of_mapping(mapped: &[u8]) -> u64 {
    let at = mapped.as_ptr() as u64;
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                    inside = (a..b).contains(&at);
                    continue;
                }
            }
        }
        if inside {
            if let Some(kb) = line.strip_prefix("Rss:") {
                return kb.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024;
            }
        }
    }
    panic!("the mapping is not in /proc/self/smaps");
}

/// A reduced decode never reads the packets it skips: from the memory map
/// of a remote master's sparse file (the bytes it needs, the rest holes) it
/// touches the pages of the resolutions it decodes, not every page of the
/// file. (Reading the
/// skipped bytes and then writing empty packets over them faulted in a
/// remote lossless master's whole sparse file, 175 MB of zero pages, for a
/// first view that fetched 2.6 MB; the process grew by that much per master.)
#[cfg(target_os = "linux")]
#[test]
fn a_reduced_decode_from_a_sparse_memory_map_touches_only_the_pages_of_the_resolutions_it_decodes() {
    let (w, h) = (2048, 1536);
    let p = EncodeParams {
        tile_size: Some((512, 512)),
        levels: 5,
        lossless: true,
        rate: None,
        layers: 1,
        progression: Progression::Rpcl,
        precincts: None,
        ..EncodeParams::default()
    };
    let pixels = image8(w, h, 3);
    let input = EncodeInput { width: w, height: h, samples: Samples::U8(&pixels), components: 3, precision: 8 };
    let data = encode_marked(&input, &p, 0).unwrap();
    let whole = decode(&data, area(0, 0, w, h), 3, u64::MAX).unwrap();
    let header = Header::parse(&data).unwrap();
    let parts = header.tile_parts_in(0, 0, w, h).unwrap();
    let (needed, spare) = prefix::tile_prefixes(&header, &data, &Present, &parts, 3).unwrap();
    let kept: u64 = needed.iter().map(|(a, b)| b - a).sum();
    assert!(!spare.is_empty() && kept * 4 < data.len() as u64, "{kept} of {} bytes needed", data.len());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.jp2");
    // As a master read by range keeps it: the bytes the decode needs, the
    // rest holes (a sparse file of the whole length).
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::File::create(&path).unwrap();
        f.set_len(data.len() as u64).unwrap();
        let main_header = (0, needed.iter().map(|r| r.0).min().unwrap_or(0));
        for &(a, b) in std::iter::once(&main_header).chain(&needed) {
            f.seek(std::io::SeekFrom::Start(a)).unwrap();
            f.write_all(&data[a as usize..b as usize]).unwrap();
        }
    }
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: a private, read-only map of a file this test made and leaves
    // unchanged while it is mapped. Random access, as source::mmap maps
    // sources (no read-ahead around a fault).
    let mapped = unsafe { memmap2::MmapOptions::new().map(&file) }.unwrap();
    mapped.advise(memmap2::Advice::Random).unwrap();
    let before = resident_bytes_of_mapping(&mapped);
    let cut = decode_with(&mapped, &AsIfRemote, area(0, 0, w, h), 3, u64::MAX).unwrap();
    let touched = resident_bytes_of_mapping(&mapped) - before;
    assert_eq!(whole.data(), cut.data(), "the same pixels as the decode of the whole buffer");
    assert!(touched * 4 < data.len() as u64, "a 1/8 decode touched {touched} bytes of the {}-byte mapping", data.len());
}
