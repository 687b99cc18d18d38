//! Colour management end to end: Adobe RGB sources (JPEG, PNG, TIFF and a
//! JP2 with an ICC `colr` box), made in the test's set-up with Pillow's
//! ImageCms from Debian's Adobe RGB compatible profile, are served as sRGB
//! within 40 dB of Pillow's own conversion; a CMYK JPEG is converted, not
//! refused.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use http::StatusCode;
use tessera::codec::jp2::{self, Container, EncodeInput, EncodeParams, Progression};
use tessera::iiif::Format;
use tessera::pixels::Pixels;

const ADOBE: &str = "/usr/share/color/icc/compatibleWithAdobeRGB1998.icc";

/// Makes, in `dir`, from `picture.png` (sRGB): the picture converted to
/// Adobe RGB by Pillow and saved with the profile as `adobe.jpg`,
/// `adobe.png`, `adobe.tif`, and without it as `adobe-pixels.png`; for each,
/// `ref-NAME.png`: Pillow's conversion of the file's decoded pixels back to
/// sRGB. And `cmyk.jpg` with `ref-cmyk.png` (Pillow's own CMYK to RGB).
const SETUP: &str = r#"
import io, sys
from PIL import Image, ImageCms
d, adobe_path = sys.argv[1], sys.argv[2]
adobe = ImageCms.getOpenProfile(adobe_path)
srgb = ImageCms.createProfile("sRGB")
src = Image.open(f"{d}/picture.png").convert("RGB")
wide = ImageCms.profileToProfile(src, srgb, adobe, outputMode="RGB")
icc = adobe.tobytes()
wide.save(f"{d}/adobe.jpg", quality=95, icc_profile=icc)
wide.save(f"{d}/adobe.png", icc_profile=icc)
wide.save(f"{d}/adobe.tif", compression="tiff_deflate", icc_profile=icc)
wide.save(f"{d}/adobe-pixels.png")
for name in ["adobe.jpg", "adobe.png", "adobe.tif", "adobe-pixels.png"]:
    im = Image.open(f"{d}/{name}").convert("RGB")
    ImageCms.profileToProfile(im, adobe, srgb, outputMode="RGB").save(f"{d}/ref-{name}.png")
src.convert("CMYK").save(f"{d}/cmyk.jpg", quality=95)
Image.open(f"{d}/cmyk.jpg").convert("RGB").save(f"{d}/ref-cmyk.jpg.png")
"#;

/// The set-up's folder, or `None` (the test skips; a failure under CI)
/// when Pillow or the profile is missing.
fn setup() -> Option<(tempfile::TempDir, Pixels)> {
    let Some(py) = pillow_python() else {
        skip_missing("Python with Pillow", "CI=true bash scripts/test.sh makes target/tools/venv");
        return None;
    };
    if !Path::new(ADOBE).exists() {
        skip_missing("the Adobe RGB compatible profile", "apt-get install icc-profiles-free");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let picture = tessera::samples::generate::photo_like(480, 320, 11);
    std::fs::write(d.join("picture.png"), tessera::codec::encode::encode(&picture, Format::Png, 90).unwrap()).unwrap();
    let out = Command::new(py).args(["-c", SETUP, d.to_str().unwrap(), ADOBE]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A lossless JP2 of the Adobe RGB pixels with the profile in its colr box.
    let pixels = decode_any(&std::fs::read(d.join("adobe-pixels.png")).unwrap());
    let params = EncodeParams {
        tile_size: Some((256, 256)),
        levels: 3,
        lossless: true,
        rate: None,
        layers: 1,
        progression: Progression::Rpcl,
        precincts: None,
        container: Container::Jp2,
    };
    let plain = jp2::encode(&EncodeInput::from_pixels(&pixels), &params).unwrap();
    let icc = std::fs::read(ADOBE).unwrap();
    std::fs::write(d.join("adobe.jp2"), with_icc_colr(&plain, &icc)).unwrap();
    std::fs::copy(d.join("ref-adobe-pixels.png.png"), d.join("ref-adobe.jp2.png")).unwrap();
    Some((dir, picture))
}

/// A JP2 file whose colour specification box is replaced by one of method
/// 2 (restricted ICC) holding `icc` (ISO 15444-1 I.5.3.3); the `jp2h`
/// superbox's length follows.
fn with_icc_colr(jp2: &[u8], icc: &[u8]) -> Vec<u8> {
    fn find(data: &[u8], from: usize, to: usize, kind: &[u8; 4]) -> (usize, usize) {
        let mut pos = from;
        while pos + 8 <= to {
            let len = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            if &data[pos + 4..pos + 8] == kind {
                return (pos, len);
            }
            pos += len;
        }
        panic!("no {kind:?} box");
    }
    let (h, hlen) = find(jp2, 0, jp2.len(), b"jp2h");
    let (c, clen) = find(jp2, h + 8, h + hlen, b"colr");
    let mut colr = Vec::new();
    colr.extend_from_slice(&((8 + 3 + icc.len()) as u32).to_be_bytes());
    colr.extend_from_slice(b"colr");
    colr.extend_from_slice(&[2, 0, 0]);
    colr.extend_from_slice(icc);
    let mut out = jp2[..c].to_vec();
    out.extend_from_slice(&colr);
    out.extend_from_slice(&jp2[c + clen..]);
    let new_len = (hlen - clen + colr.len()) as u32;
    out[h..h + 4].copy_from_slice(&new_len.to_be_bytes());
    out
}

#[tokio::test]
async fn adobe_rgb_sources_are_served_as_srgb_as_pillow_converts_them() {
    let Some((dir, _)) = setup() else { return };
    let d = dir.path();
    let app = app(d, "");
    for name in ["adobe.jpg", "adobe.png", "adobe.tif", "adobe.jp2"] {
        let r = get(&app, &format!("/iiif/2/{name}/full/full/0/default.png")).await;
        assert_eq!(r.status(), StatusCode::OK, "{name}");
        let got = decode_any(r.body());
        let want = decode_any(&std::fs::read(d.join(format!("ref-{name}.png"))).unwrap());
        let unconverted = decode_any(&std::fs::read(d.join("adobe-pixels.png")).unwrap());
        let db = psnr(got.data(), want.data());
        eprintln!("{name}: {db:.1} dB against Pillow's conversion");
        assert!(db >= 40.0, "{name}: {db:.1} dB against Pillow's conversion");
        let raw = psnr(got.data(), unconverted.data());
        assert!(raw < 40.0, "{name}: not converted ({raw:.1} dB to the Adobe RGB values)");
    }
    // A region at a reduced scale of the JP2 is converted too (the decoded
    // units' path), and tiles stay converted in the cache.
    for _ in 0..2 {
        let r = get(&app, "/iiif/2/adobe.jp2/0,0,256,256/128,/0/default.png").await;
        let got = decode_any(r.body());
        let full = decode_any(&std::fs::read(d.join("ref-adobe.jp2.png")).unwrap());
        let unconverted = decode_any(&std::fs::read(d.join("adobe-pixels.png")).unwrap());
        let half = |p: &Pixels| p.crop(0, 0, 256, 256);
        // Compare means per channel: the reduction blurs, the colour shift stays.
        let mean = |p: &Pixels| -> [f64; 3] {
            let mut m = [0.0; 3];
            for px in p.data().chunks(3) {
                for c in 0..3 {
                    m[c] += px[c] as f64;
                }
            }
            m.map(|v| v / (p.data().len() / 3) as f64)
        };
        let (g, w, u) = (mean(&got), mean(&half(&full)), mean(&half(&unconverted)));
        let dist = |a: [f64; 3], b: [f64; 3]| (0..3).map(|c| (a[c] - b[c]).abs()).fold(0.0, f64::max);
        assert!(dist(g, w) < 1.5 && dist(g, u) > 2.0, "means {g:?} sRGB {w:?} Adobe {u:?}");
    }
}

#[tokio::test]
async fn a_cmyk_jpeg_is_converted_to_rgb_not_refused() {
    let Some((dir, _)) = setup() else { return };
    let d = dir.path();
    let app = app(d, "");
    let info = get(&app, "/iiif/2/cmyk.jpg/info.json").await;
    assert_eq!(info.status(), StatusCode::OK);
    let r = get(&app, "/iiif/2/cmyk.jpg/full/full/0/default.png").await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = decode_any(r.body());
    let want = decode_any(&std::fs::read(d.join("ref-cmyk.jpg.png")).unwrap());
    let db = psnr(got.data(), want.data());
    eprintln!("cmyk.jpg: {db:.1} dB against Pillow");
    assert!(db >= 40.0, "{db:.1} dB against Pillow");
    // Scaled and cropped decodes of a CMYK JPEG too.
    let r = get(&app, "/iiif/2/cmyk.jpg/100,50,200,100/100,/0/default.jpg").await;
    assert_eq!(r.status(), StatusCode::OK);
}
