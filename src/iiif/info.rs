//! info.json documents for Image API 2.1.1 and 3.0, built from header facts.
//! Pure: no I/O.

use serde_json::{json, Value};

use super::ApiVersion;
use crate::model::{ImageShape, Limits};

pub const CONTEXT_V2: &str = "http://iiif.io/api/image/2/context.json";
pub const CONTEXT_V3: &str = "http://iiif.io/api/image/3/context.json";
pub const PROFILE_V2_LEVEL2: &str = "http://iiif.io/api/image/2/level2.json";
pub const PROFILE_V3_LEVEL2: &str = "level2";

/// What info.json advertises about tiles and sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct Tiling {
    pub tile_w: u32,
    pub tile_h: u32,
    pub scale_factors: Vec<u32>,
    /// Whole-image sizes, smallest first.
    pub sizes: Vec<(u32, u32)>,
}

/// The tile sizes a server advertises (`[output]` tile_size and
/// native_tile_max).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileSizes {
    /// For sources without tiles of their own.
    pub default: u32,
    /// The largest side advertised for native tiles that are cut from one
    /// decode ([`ImageShape::native_tile_cut`]): larger ones are halved
    /// until they fit, so each advertised tile lies inside one native tile.
    pub native_max: u32,
}

impl TileSizes {
    /// `default` for sources without tiles, native tiles as they are.
    pub fn uniform(default: u32) -> TileSizes {
        TileSizes { default, native_max: u32::MAX }
    }
}

/// Decides the advertised tiling: a source's own tiles (a tiled JPEG 2000's
/// codestream tiles halved to at most `sizes.native_max` a side, a TIFF's
/// as they are), else `sizes.default`; scale factors down to the level
/// where the whole image fits one tile; sizes from those levels within the
/// output limits.
pub fn tiling(info: &ImageShape, sizes: TileSizes, limits: &Limits) -> Tiling {
    let (tile_w, tile_h) = match info.native_tile {
        Some((w, h)) if (64..=4096).contains(&w) && (64..=4096).contains(&h) => {
            if info.native_tile_cut {
                split_native((w, h), sizes.native_max)
            } else {
                (w, h)
            }
        }
        _ => (sizes.default, sizes.default),
    };
    let mut scale_factors = vec![1u32];
    let mut sf = 1u32;
    while (info.width.div_ceil(sf) > tile_w || info.height.div_ceil(sf) > tile_h) && sf < (1 << 20) {
        sf *= 2;
        scale_factors.push(sf);
    }
    let mut sizes = Vec::new();
    for &f in scale_factors.iter().rev() {
        let (w, h) = (info.width.div_ceil(f), info.height.div_ceil(f));
        if w > limits.max_width || h > limits.max_height || w as u64 * h as u64 > limits.max_area {
            continue;
        }
        if sizes.last() != Some(&(w, h)) {
            sizes.push((w, h));
        }
    }
    Tiling { tile_w, tile_h, scale_factors, sizes }
}

/// A native tile halved (both sides, so each advertised tile lies inside
/// one native tile) until its larger side is at most `max`, never below 64.
fn split_native((mut w, mut h): (u32, u32), max: u32) -> (u32, u32) {
    while w.max(h) > max && w.min(h) / 2 >= 64 && w % 2 == 0 && h % 2 == 0 {
        w /= 2;
        h /= 2;
    }
    (w, h)
}

/// The features both versions name alike (Image API 2.1 `supports`, 3.0
/// `extraFeatures`); each version adds its own below.
const FEATURES: [&str; 16] = [
    "baseUriRedirect",
    "canonicalLinkHeader",
    "cors",
    "jsonldMediaType",
    "mirroring",
    "profileLinkHeader",
    "regionByPct",
    "regionByPx",
    "regionSquare",
    "rotationArbitrary",
    "rotationBy90s",
    "sizeByConfinedWh",
    "sizeByH",
    "sizeByPct",
    "sizeByW",
    "sizeByWh",
];

const QUALITIES: [&str; 4] = ["default", "color", "gray", "bitonal"];
const FORMATS: [&str; 5] = ["jpg", "png", "gif", "tif", "webp"];

/// Builds info.json. `id` is the image's base URI (no trailing slash).
pub fn build(version: ApiVersion, id: &str, info: &ImageShape, t: &Tiling, limits: &Limits) -> Value {
    let sizes: Vec<Value> = t.sizes.iter().map(|(w, h)| json!({"width": w, "height": h})).collect();
    let tiles = json!([{ "width": t.tile_w, "height": t.tile_h, "scaleFactors": t.scale_factors }]);
    match version {
        ApiVersion::V2 => {
            // 2.1 names one more feature than 3.0: distorted sizes, which 3.0
            // folds into `sizeByWh`.
            let mut supports = FEATURES.to_vec();
            supports.push("sizeByDistortedWh");
            if limits.max_upscale > 1.0 {
                supports.push("sizeAboveFull");
            }
            let mut p = json!({ "formats": FORMATS, "qualities": QUALITIES, "supports": supports });
            // 2.1 publishes limits in the profile; always give them, so
            // clients know what `max` means.
            p["maxWidth"] = json!(limits.max_width);
            p["maxHeight"] = json!(limits.max_height);
            p["maxArea"] = json!(limits.max_area);
            json!({
                "@context": CONTEXT_V2,
                "@id": id,
                "protocol": "http://iiif.io/api/image",
                "width": info.width,
                "height": info.height,
                "sizes": sizes,
                "tiles": tiles,
                "profile": [PROFILE_V2_LEVEL2, p],
            })
        }
        ApiVersion::V3 => {
            let mut features = FEATURES.to_vec();
            if limits.max_upscale > 1.0 {
                features.push("sizeUpscaling");
            }
            json!({
                "@context": CONTEXT_V3,
                "id": id,
                "type": "ImageService3",
                "protocol": "http://iiif.io/api/image",
                "profile": PROFILE_V3_LEVEL2,
                "width": info.width,
                "height": info.height,
                "maxWidth": limits.max_width,
                "maxHeight": limits.max_height,
                "maxArea": limits.max_area,
                "sizes": sizes,
                "tiles": tiles,
                "extraQualities": ["color", "gray", "bitonal"],
                "extraFormats": ["gif", "tif", "webp"],
                "extraFeatures": features,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(w: u32, h: u32, tile: Option<(u32, u32)>) -> ImageShape {
        ImageShape { width: w, height: h, native_tile: tile, native_tile_cut: true }
    }

    fn sizes(default: u32) -> TileSizes {
        TileSizes::uniform(default)
    }

    #[test]
    fn scale_factors_go_down_until_the_image_fits_one_tile() {
        let t = tiling(&info(6000, 4000, None), sizes(512), &Limits::default());
        assert_eq!((t.tile_w, t.tile_h), (512, 512));
        assert_eq!(t.scale_factors, vec![1, 2, 4, 8, 16]);
        assert_eq!(t.sizes.first(), Some(&(375, 250)));
        assert_eq!(t.sizes.last(), Some(&(6000, 4000)));
    }

    #[test]
    fn a_tiled_jp2_advertises_its_codestream_tiles() {
        let t = tiling(&info(10000, 8000, Some((1024, 1024))), sizes(512), &Limits::default());
        assert_eq!((t.tile_w, t.tile_h), (1024, 1024));
        assert_eq!(*t.scale_factors.last().unwrap(), 16);
    }

    #[test]
    fn a_tiled_jp2_s_large_codestream_tiles_are_advertised_halved_to_the_native_maximum() {
        let s = TileSizes { default: 512, native_max: 256 };
        let t = tiling(&info(12000, 9000, Some((1024, 1024))), s, &Limits::default());
        assert_eq!((t.tile_w, t.tile_h), (256, 256));
        // Each advertised tile lies inside one codestream tile.
        assert_eq!(1024 % t.tile_w, 0);
        // Scale factors follow the advertised tile.
        assert_eq!(*t.scale_factors.last().unwrap(), 64);
        // Tiles at or under the maximum, and odd sizes, stay as they are;
        // a non-square tile keeps its shape; nothing goes under 64.
        for (native, max, want) in [
            ((256, 256), 256, (256, 256)),
            ((128, 128), 256, (128, 128)),
            ((1000, 1000), 256, (250, 250)),
            ((999, 999), 256, (999, 999)),
            ((2048, 1024), 256, (256, 128)),
            ((1024, 128), 256, (512, 64)),
            ((512, 512), 64, (64, 64)),
            ((256, 128), 64, (128, 64)),
        ] {
            assert_eq!(split_native(native, max), want, "{native:?} at most {max}");
        }
    }

    #[test]
    fn native_tiles_that_are_not_cut_from_one_decode_are_advertised_as_they_are() {
        let tiff = ImageShape { width: 12000, height: 9000, native_tile: Some((512, 512)), native_tile_cut: false };
        let t = tiling(&tiff, TileSizes { default: 512, native_max: 256 }, &Limits::default());
        assert_eq!((t.tile_w, t.tile_h), (512, 512));
    }

    #[test]
    fn sizes_above_the_limits_are_not_listed() {
        let t = tiling(&info(20000, 20000, None), sizes(512), &Limits::default());
        assert!(t.sizes.iter().all(|(w, h)| *w <= 10000 && *h <= 10000));
    }

    #[test]
    fn v2_document_has_the_required_fields() {
        let i = info(1000, 800, None);
        let t = tiling(&i, sizes(512), &Limits::default());
        let v = build(ApiVersion::V2, "http://x/iiif/2/a", &i, &t, &Limits::default());
        assert_eq!(v["@context"], CONTEXT_V2);
        assert_eq!(v["@id"], "http://x/iiif/2/a");
        assert_eq!(v["protocol"], "http://iiif.io/api/image");
        assert_eq!(v["width"], 1000);
        assert_eq!(v["profile"][0], PROFILE_V2_LEVEL2);
        assert_eq!(v["tiles"][0]["scaleFactors"], json!([1, 2]));
    }

    #[test]
    fn v3_document_uses_id_type_and_level2() {
        let i = info(1000, 800, None);
        let t = tiling(&i, sizes(512), &Limits::default());
        let v = build(ApiVersion::V3, "http://x/iiif/3/a", &i, &t, &Limits::default());
        assert_eq!(v["id"], "http://x/iiif/3/a");
        assert_eq!(v["type"], "ImageService3");
        assert_eq!(v["profile"], "level2");
    }
}
