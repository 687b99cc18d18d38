//! TIFF sources end to end, on files made by libvips (`vips tiffsave`, as
//! IIPImage installations make their pyramids) and libtiff's `tiffcp`
//! (planar copies): every compression vips writes that Tessera reads, tiled
//! and striped, pyramidal (pages in the chain or as SubIFDs), 16-bit, 1-bit,
//! with alpha, planar, CMYK with or without a profile; the stored-tile
//! passthrough; hostile files.
//!
//! Lossless files are checked pixel for pixel against the picture they were
//! made from; JPEG ones against libvips's own decode of the same page.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use http::StatusCode;
use tessera::iiif::Format;
use tessera::pixels::{Layout, Pixels};

/// Runs `PROGRAM ARGS...` in `dir`, which must succeed; false (the test
/// skips) where the program is not installed (Debian's `package`), a
/// failure under CI.
fn tool(dir: &Path, program: &str, package: &str, args: &[&str]) -> bool {
    match Command::new(program).args(args).current_dir(dir).output() {
        Ok(o) => {
            assert!(o.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
            true
        }
        Err(_) => {
            skip_missing(program, &format!("apt-get install {package}"));
            false
        }
    }
}

/// `vips ARGS...` in `dir` (see [`tool`]).
fn vips(dir: &Path, args: &[&str]) -> bool {
    tool(dir, "vips", "libvips-tools", args)
}

/// A folder holding `picture.png` (a photo-like picture of `w × h`, or with
/// an alpha channel when `alpha`), to make TIFFs from.
fn folder(w: u32, h: u32, alpha: bool) -> (tempfile::TempDir, Pixels) {
    let dir = tempfile::tempdir().unwrap();
    let mut px = tessera::samples::generate::photo_like(w, h, 7);
    if alpha {
        let mut d = Vec::with_capacity(px.data().len() / 3 * 4);
        for (i, p) in px.data().chunks(3).enumerate() {
            let (x, y) = (i as u32 % w, i as u32 / w);
            d.extend_from_slice(p);
            d.push(((x * 255 / w) ^ (y * 255 / h)) as u8);
        }
        px = Pixels::new(w, h, Layout::Rgba, d).unwrap();
    }
    let png = tessera::codec::encode::encode(&px, Format::Png, 90).unwrap();
    std::fs::write(dir.path().join("picture.png"), png).unwrap();
    (dir, px)
}

fn crop(p: &Pixels, x: u32, y: u32, w: u32, h: u32) -> Pixels {
    p.crop(x, y, w, h)
}

async fn metrics(app: &std::sync::Arc<tessera::service::App>) -> String {
    String::from_utf8(get(app, "/metrics").await.into_body().to_vec()).unwrap()
}

async fn counter(app: &std::sync::Arc<tessera::service::App>, name: &str) -> f64 {
    metric_value(&metrics(app).await, name).unwrap_or(0.0)
}

/// libvips's decode of `x,y,w,h` of page `page` of `file`, as pixels.
fn vips_reference(dir: &Path, file: &str, page: u32, x: u32, y: u32, w: u32, h: u32) -> Pixels {
    vips_area(dir, &format!("{file}[page={page}]"), x, y, w, h)
}

/// libvips's decode of `x,y,w,h` of `src` (a file name with load options).
fn vips_area(dir: &Path, src: &str, x: u32, y: u32, w: u32, h: u32) -> Pixels {
    let out = format!("ref-{}-{x}-{y}.png", src.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    assert!(vips(dir, &["extract_area", src, &out, &x.to_string(), &y.to_string(), &w.to_string(), &h.to_string()]));
    decode_any(&std::fs::read(dir.join(out)).unwrap())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The entropy-coded data of a JPEG: what follows its start-of-scan header.
fn scan_data(jpeg: &[u8]) -> &[u8] {
    let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).expect("a scan");
    let len = u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]) as usize;
    &jpeg[sos + 2 + len..]
}

#[tokio::test]
async fn a_tile_on_a_pages_grid_is_the_stored_jpeg_tile_with_no_decode_or_encode() {
    let (dir, _) = folder(2000, 1500, false);
    let d = dir.path();
    let args = ["tiffsave", "picture.png", "p.tif", "--tile", "--tile-width", "256", "--tile-height", "256"];
    if !vips(d, &[&args[..], &["--pyramid", "--compression", "jpeg", "--Q", "85"]].concat()) {
        return;
    }
    let file = std::fs::read(d.join("p.tif")).unwrap();
    let app = app(d, "");
    let info: serde_json::Value = serde_json::from_slice(get(&app, "/iiif/2/p.tif/info.json").await.body()).unwrap();
    assert_eq!(info["tiles"][0]["width"], 256, "{info}");
    // Tile (1, 1) of pages 0 and 1 (scale factors 1, 2), tile (0, 0) of
    // page 2 (500 × 375: its tile (1, 1) is an edge tile).
    for (page, sf, col, row) in [(0u32, 1u32, 1u32, 1u32), (1, 2, 1, 1), (2, 4, 0, 0)] {
        let (x, y, side) = (256 * col * sf, 256 * row * sf, 256 * sf);
        let r = get(&app, &format!("/iiif/2/p.tif/{x},{y},{side},{side}/256,/0/default.jpg")).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body = r.body();
        assert!(contains(&file, scan_data(body)), "page {page}: the tile's coded data is the file's");
        let got = decode_any(body);
        let want = vips_reference(d, "p.tif", page, 256 * col, 256 * row, 256, 256);
        assert_eq!((got.width(), got.height()), (256, 256));
        assert!(psnr(got.data(), want.data()) > 60.0, "page {page}: as libvips decodes it");
    }
    assert_eq!(counter(&app, "tessera_passthrough_total").await, 3.0);
    assert_eq!(counter(&app, "tessera_decodes_total").await, 0.0);
    // Anything else about the request than the stored tile means a decode:
    // another size, a rotation, gray, PNG, an edge tile with padding.
    for path in [
        "256,256,256,256/128,/0/default.jpg",
        "256,256,256,256/256,/90/default.jpg",
        "256,256,256,256/256,/0/gray.jpg",
        "256,256,256,256/256,/0/default.png",
        "1792,1280,208,220/208,/0/default.jpg",
    ] {
        assert_eq!(get(&app, &format!("/iiif/2/p.tif/{path}")).await.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(counter(&app, "tessera_passthrough_total").await, 3.0);
    assert_eq!(counter(&app, "tessera_decodes_total").await, 5.0);
    // The padded edge tile has exactly the image's pixels.
    let r = get(&app, "/iiif/2/p.tif/1792,1280,208,220/full/0/default.png").await;
    let got = decode_any(r.body());
    let want = vips_reference(d, "p.tif", 0, 1792, 1280, 208, 220);
    assert!(psnr(got.data(), want.data()) > 60.0);
}

#[tokio::test]
async fn every_lossless_compression_tiled_or_striped_gives_the_pictures_exact_pixels() {
    let (dir, px) = folder(700, 500, false);
    let d = dir.path();
    let mut names = Vec::new();
    for compression in ["none", "deflate", "lzw", "packbits"] {
        for tiled in [true, false] {
            let name = format!("{compression}-{}.tif", if tiled { "tiled" } else { "striped" });
            let mut args = vec!["tiffsave", "picture.png", &name, "--compression", compression];
            if tiled {
                args.extend(["--tile", "--tile-width", "128", "--tile-height", "64"]);
            }
            if !vips(d, &args) {
                return;
            }
            names.push(name);
        }
    }
    let app = app(d, "");
    for name in &names {
        // A region across chunk boundaries, the last column and row of
        // chunks (cut short), and the whole picture.
        for (x, y, w, h) in [(37, 41, 300, 200), (600, 430, 100, 70), (0, 0, 700, 500)] {
            let r = get(&app, &format!("/iiif/2/{name}/{x},{y},{w},{h}/full/0/default.png")).await;
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            let got = decode_any(r.body());
            assert!(got == crop(&px, x, y, w, h), "{name} {x},{y},{w},{h}");
        }
    }
    assert_eq!(counter(&app, "tessera_passthrough_total").await, 0.0);
}

#[tokio::test]
async fn sixteen_bit_samples_scale_to_eight_bits_with_rounding_and_alpha_is_kept() {
    let (dir, px) = folder(300, 200, true);
    let d = dir.path();
    // ×257 maps 8-bit values onto 16 bits exactly, so rounding gives them back.
    let ok = vips(d, &["linear", "picture.png", "wide.v", "257", "0"])
        && vips(d, &["cast", "wide.v", "wide16.v", "ushort"])
        && vips(d, &["tiffsave", "wide16.v", "rgba16.tif", "--compression", "deflate", "--tile"])
        && vips(d, &["tiffsave", "picture.png", "rgba8.tif", "--compression", "lzw"]);
    if !ok {
        return;
    }
    let app = app(d, "");
    for name in ["rgba16.tif", "rgba8.tif"] {
        let r = get(&app, &format!("/iiif/2/{name}/full/full/0/default.png")).await;
        assert_eq!(r.status(), StatusCode::OK);
        let got = decode_any(r.body());
        assert_eq!(got.layout(), Layout::Rgba, "{name}: alpha kept");
        assert!(got == px, "{name}: exact");
    }
    // A 16-bit value between two 8-bit ones rounds to the nearer.
    assert!(vips(d, &["black", "flat.v", "64", "64", "--bands", "1"]));
    assert!(vips(d, &["linear", "flat.v", "mid.v", "1", &(100 * 257 + 129).to_string()]));
    assert!(vips(d, &["cast", "mid.v", "mid16.v", "ushort"]));
    assert!(vips(d, &["tiffsave", "mid16.v", "gray16.tif"]));
    let got = decode_any(get(&app, "/iiif/2/gray16.tif/full/full/0/default.png").await.body());
    assert_eq!(got.layout(), Layout::Gray);
    assert!(got.data().iter().all(|&v| v == 101), "25829/257 = 100.502 rounds to 101");
}

#[tokio::test]
async fn bilevel_pages_deflate_or_group_4_become_black_and_white_gray_either_way_round() {
    let (dir, _) = folder(333, 211, false);
    let d = dir.path();
    let ok = vips(d, &["colourspace", "picture.png", "gray.v", "b-w"])
        && vips(d, &["relational_const", "gray.v", "bw.v", "moreeq", "128"])
        && vips(
            d,
            &["tiffsave", "bw.v", "bw.tif", "--bitdepth", "1", "--compression", "deflate", "--predictor", "none"],
        )
        && vips(d, &["tiffsave", "bw.v", "bw-g4.tif", "--bitdepth", "1", "--compression", "ccittfax4"])
        && vips(d, &["tiffsave", "bw.v", "bw-white.tif", "--bitdepth", "1", "--miniswhite"])
        && vips(d, &["pngsave", "bw.v", "bw.png"]);
    if !ok {
        return;
    }
    let want = decode_any(&std::fs::read(d.join("bw.png")).unwrap());
    let app = app(d, "");
    for name in ["bw.tif", "bw-white.tif", "bw-g4.tif"] {
        let got = decode_any(get(&app, &format!("/iiif/2/{name}/full/full/0/default.png")).await.body());
        assert_eq!(got.layout(), Layout::Gray);
        assert!(got == want, "{name}");
    }
}

#[tokio::test]
async fn a_pyramids_pages_serve_their_scales_and_any_region_matches_libvips() {
    let (dir, _) = folder(1600, 1200, false);
    let d = dir.path();
    let args = ["tiffsave", "picture.png", "p.tif", "--tile", "--pyramid", "--compression", "deflate"];
    if !vips(d, &args) {
        return;
    }
    let app = app(d, "");
    // Scale factor 4, off the grid: cut from page 2 (400 × 300), no resize.
    let r = get(&app, "/iiif/2/p.tif/400,200,800,600/200,/0/default.png").await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = decode_any(r.body());
    let want = vips_reference(d, "p.tif", 2, 100, 50, 200, 150);
    assert!(got == want, "page 2's pixels");
    assert_eq!(counter(&app, "tessera_decodes_total").await, 1.0);
    // A thumbnail of the whole image decodes the smallest page that serves it.
    let r = get(&app, "/iiif/2/p.tif/full/100,/0/default.png").await;
    assert_eq!(decode_any(r.body()).width(), 100);
}

/// `tiffcp ARGS...` in `dir` (libtiff's copier: planar, re-stripped and
/// re-tiled copies, which vips does not write; see [`tool`]).
fn tiffcp(dir: &Path, args: &[&str]) -> bool {
    tool(dir, "tiffcp", "libtiff-tools", args)
}

#[tokio::test]
async fn planar_pages_give_the_same_pixels_as_interleaved_ones_tiled_or_striped() {
    let (dir, px) = folder(700, 500, true);
    let d = dir.path();
    // (tiffcp makes planar copies of 8-bit files only.)
    let ok = vips(d, &["tiffsave", "picture.png", "chunky.tif", "--compression", "lzw"])
        && tiffcp(d, &["-p", "separate", "-c", "lzw", "-t", "-w", "128", "-l", "64", "chunky.tif", "tiled.tif"])
        && tiffcp(d, &["-p", "separate", "-c", "zip", "-r", "37", "chunky.tif", "striped.tif"]);
    if !ok {
        return;
    }
    let app = app(d, "");
    for name in ["tiled.tif", "striped.tif"] {
        for (x, y, w, h) in [(37, 41, 300, 200), (600, 430, 100, 70), (0, 0, 700, 500)] {
            let r = get(&app, &format!("/iiif/2/{name}/{x},{y},{w},{h}/full/0/default.png")).await;
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            let got = decode_any(r.body());
            assert_eq!(got.layout(), Layout::Rgba, "{name}: alpha kept");
            assert!(got == crop(&px, x, y, w, h), "{name} {x},{y},{w},{h}");
        }
    }
}

/// RGB from CMYK by the device formula, R = (1 - C)(1 - K), 0 being no ink.
fn device_rgb(cmyk: &[u8]) -> Vec<u8> {
    let k = 255 - cmyk[3] as u32;
    cmyk[..3].iter().map(|&c| (((255 - c as u32) * k + 127) / 255) as u8).collect()
}

#[tokio::test]
async fn cmyk_pages_become_srgb_by_their_profile_or_the_device_formula_interleaved_or_planar() {
    let (dir, px) = folder(300, 200, false);
    let d = dir.path();
    // Inks from the picture: C, M, Y its red, green and blue, K its green.
    let ok = vips(d, &["extract_band", "picture.png", "k.v", "1"])
        && vips(d, &["bandjoin", "picture.png k.v", "inks.v"])
        && vips(d, &["copy", "inks.v", "cmyk.v", "--interpretation", "cmyk"])
        && vips(d, &["tiffsave", "cmyk.v", "device.tif", "--compression", "lzw", "--tile", "--tile-width", "64", "--tile-height", "64"])
        && tiffcp(d, &["-p", "separate", "-c", "zip", "device.tif", "device-planar.tif"])
        && vips(d, &["linear", "cmyk.v", "wide.v", "257", "0"])
        && vips(d, &["cast", "wide.v", "wide16.v", "ushort"])
        && vips(d, &["copy", "wide16.v", "cmyk16.v", "--interpretation", "cmyk"])
        && vips(d, &["tiffsave", "cmyk16.v", "device16.tif", "--compression", "deflate"])
        // Inks and an alpha (the picture's blue).
        && vips(d, &["extract_band", "picture.png", "a.v", "2"])
        && vips(d, &["bandjoin", "inks.v a.v", "inks-alpha.v"])
        && vips(d, &["copy", "inks-alpha.v", "cmyka.v", "--interpretation", "cmyk"])
        && vips(d, &["tiffsave", "cmyka.v", "device-alpha.tif", "--compression", "lzw"])
        // Through vips's built-in CMYK profile, embedded in the file.
        && vips(d, &["icc_export", "picture.png", "profiled.v", "--output-profile", "cmyk", "--intent", "perceptual"])
        && vips(d, &["tiffsave", "profiled.v", "profiled.tif", "--compression", "lzw", "--tile"]);
    let Some(py) = pillow_python() else {
        skip_missing("Python with Pillow", "CI=true bash scripts/test.sh makes target/tools/venv");
        return;
    };
    if !ok {
        return;
    }
    // Pillow's conversion with the file's own profile, perceptual: one
    // Little CMS transform from CMYK to sRGB, as Tessera makes it (libvips
    // goes through Lab in two, with another black point).
    let script = "import io, sys\nfrom PIL import Image, ImageCms\nim = Image.open(sys.argv[1])\n\
        src = ImageCms.ImageCmsProfile(io.BytesIO(im.info['icc_profile']))\n\
        ImageCms.profileToProfile(im, src, ImageCms.createProfile('sRGB'), \
        renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode='RGB').save(sys.argv[2])\n";
    let o = Command::new(py).args(["-c", script, "profiled.tif", "reference.png"]).current_dir(d).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: Vec<u8> = px.data().chunks(3).flat_map(|p| device_rgb(&[p[0], p[1], p[2], p[1]])).collect();
    let want = Pixels::new(300, 200, Layout::Rgb, want).unwrap();
    let app = app(d, "");
    for name in ["device.tif", "device-planar.tif", "device16.tif"] {
        let r = get(&app, &format!("/iiif/2/{name}/full/full/0/default.png")).await;
        assert_eq!(r.status(), StatusCode::OK, "{name}");
        let got = decode_any(r.body());
        assert_eq!(got.layout(), Layout::Rgb, "{name}");
        assert!(got == want, "{name}: the device formula, exactly");
        // A region of it: the same conversion, cut.
        let r = get(&app, &format!("/iiif/2/{name}/50,70,120,90/full/0/default.png")).await;
        assert!(decode_any(r.body()) == crop(&want, 50, 70, 120, 90), "{name}: a region");
    }
    // With alpha: kept beside the converted inks.
    let r = get(&app, "/iiif/2/device-alpha.tif/full/full/0/default.png").await;
    let got = decode_any(r.body());
    assert_eq!(got.layout(), Layout::Rgba);
    let with_alpha: Vec<u8> =
        want.data().chunks(3).zip(px.data().chunks(3)).flat_map(|(c, p)| [c[0], c[1], c[2], p[2]]).collect();
    assert!(got.data() == &with_alpha[..], "inks converted, alpha as stored");
    // With its profile, as Pillow converts it.
    let r = get(&app, "/iiif/2/profiled.tif/full/full/0/default.png").await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = decode_any(r.body());
    let reference = decode_any(&std::fs::read(d.join("reference.png")).unwrap());
    assert!(psnr(got.data(), reference.data()) >= 40.0, "{} dB", psnr(got.data(), reference.data()));
    // Round trip through the CMYK gamut: near the sRGB picture it came from.
    assert!(psnr(got.data(), px.data()) >= 25.0, "{} dB", psnr(got.data(), px.data()));
}

#[tokio::test]
async fn jpeg_pages_stored_as_subifds_serve_their_scales_and_pass_through() {
    let (dir, _) = folder(2000, 1500, false);
    let d = dir.path();
    let args = ["tiffsave", "picture.png", "sub.tif", "--tile", "--tile-width", "256", "--tile-height", "256"];
    if !vips(d, &[&args[..], &["--pyramid", "--subifd", "--compression", "jpeg", "--Q", "85"]].concat()) {
        return;
    }
    let file = std::fs::read(d.join("sub.tif")).unwrap();
    let app = app(d, "");
    let info: serde_json::Value = serde_json::from_slice(get(&app, "/iiif/2/sub.tif/info.json").await.body()).unwrap();
    let factors: Vec<u64> =
        info["tiles"][0]["scaleFactors"].as_array().unwrap().iter().filter_map(|v| v.as_u64()).collect();
    assert!(factors.starts_with(&[1, 2, 4]), "{info}");
    // Tile (1, 1) of the SubIFD at 1/2 and tile (0, 0) of the one at 1/4:
    // the stored tiles, with no decode.
    for (sf, col, row) in [(2u32, 1u32, 1u32), (4, 0, 0)] {
        let (x, y, side) = (256 * col * sf, 256 * row * sf, 256 * sf);
        let r = get(&app, &format!("/iiif/2/sub.tif/{x},{y},{side},{side}/256,/0/default.jpg")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(contains(&file, scan_data(r.body())), "1/{sf}: the tile's coded data is the file's");
    }
    assert_eq!(counter(&app, "tessera_passthrough_total").await, 2.0);
    assert_eq!(counter(&app, "tessera_decodes_total").await, 0.0);
    // Off the grid at 1/4: cut from that page, as libvips reads it.
    let r = get(&app, "/iiif/2/sub.tif/400,200,800,600/200,/0/default.png").await;
    let got = decode_any(r.body());
    let want = vips_area(d, "sub.tif[subifd=1]", 100, 50, 200, 150);
    assert!(psnr(got.data(), want.data()) > 60.0, "the 1/4 SubIFD's pixels");
    assert_eq!(counter(&app, "tessera_decodes_total").await, 1.0);
}

#[tokio::test]
async fn palette_pages_become_their_colours_with_every_compression_pillow_writes() {
    let (dir, _) = folder(301, 203, false);
    let d = dir.path();
    let Some(py) = pillow_python() else {
        skip_missing("Python with Pillow", "CI=true bash scripts/test.sh makes target/tools/venv");
        return;
    };
    // 200 colours and 16 colours; every compression Pillow (libtiff) writes
    // for palettes, in one strip; Pillow's own RGB of each file as the
    // reference. Then libtiff's copies of each in strips of 23 rows and in
    // tiles of 64², with the same compression.
    let script = "import sys\nfrom PIL import Image\nsrc = Image.open('picture.png').convert('RGB')\n\
        for n in (200, 16):\n\
        \x20   p = src.quantize(n)\n\
        \x20   for c in ('raw', 'packbits', 'tiff_lzw', 'tiff_adobe_deflate'):\n\
        \x20       name = f'p{n}-{c}.tif'\n\
        \x20       p.save(name, compression=c)\n\
        \x20       Image.open(name).convert('RGB').save(f'ref-{name}.png')\n";
    let o = Command::new(py).args(["-c", script]).current_dir(d).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut names = Vec::new();
    for n in [200, 16] {
        for c in ["raw", "packbits", "tiff_lzw", "tiff_adobe_deflate"] {
            let name = format!("p{n}-{c}.tif");
            let (strips, tiles) = (format!("strips-{name}"), format!("tiles-{name}"));
            if !(tiffcp(d, &["-r", "23", &name, &strips]) && tiffcp(d, &["-t", "-w", "64", "-l", "64", &name, &tiles]))
            {
                return;
            }
            names.extend([(name.clone(), name.clone()), (strips, name.clone()), (tiles, name)]);
        }
    }
    let app = app(d, "");
    for (name, made_from) in names {
        let want = decode_any(&std::fs::read(d.join(format!("ref-{made_from}.png"))).unwrap());
        let r = get(&app, &format!("/iiif/2/{name}/full/full/0/default.png")).await;
        assert_eq!(r.status(), StatusCode::OK, "{name}: {}", String::from_utf8_lossy(r.body()));
        assert!(decode_any(r.body()) == want, "{name}: Pillow's colours");
        // A region across chunks, ending in the last (short) ones.
        let r = get(&app, &format!("/iiif/2/{name}/40,150,200,53/full/0/default.png")).await;
        assert!(decode_any(r.body()) == crop(&want, 40, 150, 200, 53), "{name}: a region");
    }
}

#[test]
fn damaged_palette_cmyk_planar_and_subifd_files_give_errors_or_pixels_never_a_panic() {
    use rand::{Rng, SeedableRng};
    let (dir, _) = folder(120, 90, false);
    let d = dir.path();
    let Some(py) = pillow_python() else {
        skip_missing("Python with Pillow", "CI=true bash scripts/test.sh makes target/tools/venv");
        return;
    };
    let script = "from PIL import Image\nImage.open('picture.png').convert('RGB').quantize(64)\
        .save('palette.tif', compression='tiff_lzw')\n";
    assert!(Command::new(py).args(["-c", script]).current_dir(d).status().unwrap().success());
    let ok = tiffcp(d, &["-t", "-w", "32", "-l", "32", "palette.tif", "palette-tiled.tif"])
        && vips(d, &["extract_band", "picture.png", "k.v", "1"])
        && vips(d, &["bandjoin", "picture.png k.v", "inks.v"])
        && vips(d, &["copy", "inks.v", "cmyk.v", "--interpretation", "cmyk"])
        && vips(
            d,
            &[
                "tiffsave",
                "cmyk.v",
                "cmyk.tif",
                "--compression",
                "deflate",
                "--tile",
                "--tile-width",
                "32",
                "--tile-height",
                "32",
            ],
        )
        && tiffcp(d, &["-p", "separate", "-c", "packbits", "cmyk.tif", "planar.tif"])
        && vips(
            d,
            &[
                "tiffsave",
                "picture.png",
                "sub.tif",
                "--tile",
                "--tile-width",
                "32",
                "--tile-height",
                "32",
                "--pyramid",
                "--subifd",
                "--compression",
                "jpeg",
            ],
        );
    if !ok {
        return;
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(18);
    let mut decoded = 0;
    for name in ["palette.tif", "palette-tiled.tif", "cmyk.tif", "planar.tif", "sub.tif"] {
        let good = std::fs::read(d.join(name)).unwrap();
        let info = tessera::codec::probe(&good).unwrap_or_else(|e| panic!("{name}: {e}"));
        let whole = tessera::plan::Rect { x: 0, y: 0, w: 120, h: 90 };
        assert!(tessera::codec::decode(&good, &info, whole, 1, 1 << 24).is_ok(), "{name}");
        for i in 0..300 {
            let mut bad = good.clone();
            match i % 3 {
                0 => bad.truncate(rng.random_range(0..good.len())),
                1 => {
                    for _ in 0..rng.random_range(1..8) {
                        let at = rng.random_range(0..bad.len());
                        bad[at] = rng.random();
                    }
                }
                _ => {
                    let at = rng.random_range(0..bad.len());
                    let end = (at + rng.random_range(1..64)).min(bad.len());
                    bad[at..end].fill(0xFF);
                }
            }
            // A panic here fails the test; an error or some pixels are fine.
            if let Ok(info) = tessera::codec::probe(&bad) {
                let all = tessera::plan::Rect { x: 0, y: 0, w: info.width.min(4096), h: info.height.min(4096) };
                for scale in [1, 2] {
                    decoded += tessera::codec::decode(&bad, &info, all, scale, 1 << 24).is_ok() as u32;
                }
            }
        }
    }
    assert!(decoded > 0, "some damage leaves a decodable file");
}

/// Asserts that `path` is answered with an error that names no file path.
async fn refused(app: &std::sync::Arc<tessera::service::App>, folder: &Path, path: &str) {
    let r = get(app, path).await;
    assert!(r.status().is_client_error() || r.status().is_server_error(), "{path}: {}", r.status());
    let text = String::from_utf8_lossy(r.body()).to_string();
    assert!(!text.contains(folder.to_str().unwrap()), "no path in {text}");
}

#[tokio::test]
async fn a_damaged_tiff_answers_an_error_and_the_server_goes_on() {
    let (dir, _) = folder(600, 400, false);
    let d = dir.path();
    if !vips(d, &["tiffsave", "picture.png", "whole.tif", "--tile", "--compression", "deflate"]) {
        return;
    }
    let whole = std::fs::read(d.join("whole.tif")).unwrap();
    // vips writes the directory at the end: cut the data short, keep the header.
    let mut cut = whole.clone();
    let keep = whole.len() / 3;
    for b in &mut cut[16..keep] {
        *b = 0xA5;
    }
    std::fs::write(d.join("scrambled.tif"), &cut).unwrap();
    std::fs::write(d.join("truncated.tif"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(d.join("header-only.tif"), b"II*\0\xff\xff\xff\x7f").unwrap();
    let app = app(d, "");
    // The directory is gone: no info.json, no image.
    for name in ["truncated.tif", "header-only.tif"] {
        for path in ["info.json", "full/200,/0/default.jpg"] {
            refused(&app, d, &format!("/iiif/2/{name}/{path}")).await;
        }
    }
    // The directory is whole but the pixels are not: info.json, no image.
    assert_eq!(get(&app, "/iiif/2/scrambled.tif/info.json").await.status(), StatusCode::OK);
    for path in ["full/200,/0/default.jpg", "0,0,256,256/full/0/default.png"] {
        refused(&app, d, &format!("/iiif/2/scrambled.tif/{path}")).await;
    }
    let r = get(&app, "/iiif/2/whole.tif/full/200,/0/default.jpg").await;
    assert_eq!(r.status(), StatusCode::OK, "the server still serves");
}
