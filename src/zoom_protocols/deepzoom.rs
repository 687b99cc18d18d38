//! Deep Zoom (DZI), the pure part: the paths `/dzi/{id}.dzi` and
//! `/dzi/{id}_files/{level}/{col}_{row}.{jpg|png}`, the descriptor XML, and
//! a tile's region and size. Levels are Deep Zoom's: the top level is
//! `ceil(log2(max(w, h)))`, level `L` is the image scaled by
//! `2^(L - top)`, `ceil(w / 2^(top - L))` pixels wide; tiles of `tile`
//! pixels, each with `overlap` more pixels on every side that has a
//! neighbour.

use super::grid::{self, IiifTile};
use crate::error::{Error, Result};
use crate::model::Format;

/// The XML namespace of a Deep Zoom descriptor.
pub const NAMESPACE: &str = "http://schemas.microsoft.com/deepzoom/2008";

/// A request under `/dzi/`, before the identifier is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DziPath<'a> {
    /// `{id}.dzi`.
    Descriptor { raw_id: &'a str },
    /// `{id}_files/{level}/{col}_{row}.{format}`.
    Tile { raw_id: &'a str, level: u32, col: u32, row: u32, format: Format },
}

/// Parses the path after `/dzi/`. A path of another shape is 404; a tile
/// name whose numbers or extension are not Deep Zoom's is 400.
pub fn parse(rest: &str) -> Result<DziPath<'_>> {
    if !rest.contains('/') {
        return match rest.strip_suffix(".dzi") {
            Some(id) if !id.is_empty() => Ok(DziPath::Descriptor { raw_id: id }),
            _ => Err(Error::not_found_msg("Not found")),
        };
    }
    let mut parts = rest.split('/');
    let (Some(files), Some(level), Some(name), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Error::not_found_msg("Not found"));
    };
    let raw_id =
        files.strip_suffix("_files").filter(|id| !id.is_empty()).ok_or_else(|| Error::not_found_msg("Not found"))?;
    let bad = || Error::bad_request("A Deep Zoom tile is {level}/{column}_{row}.jpg or .png");
    let level = grid::number(level).ok_or_else(bad)?;
    let (stem, ext) = name.rsplit_once('.').ok_or_else(bad)?;
    let format = match ext {
        "jpg" | "jpeg" => Format::Jpg,
        "png" => Format::Png,
        _ => return Err(Error::bad_request("Deep Zoom tiles are jpg or png")),
    };
    let (col, row) = stem.split_once('_').ok_or_else(bad)?;
    let (col, row) = (grid::number(col).ok_or_else(bad)?, grid::number(row).ok_or_else(bad)?);
    Ok(DziPath::Tile { raw_id, level, col, row, format })
}

/// An image as Deep Zoom presents it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub width: u32,
    pub height: u32,
    /// TileSize, at least 1.
    pub tile: u32,
    /// Overlap, less than `tile`.
    pub overlap: u32,
}

impl Geometry {
    /// The top level: `ceil(log2(max(width, height)))`.
    pub fn max_level(&self) -> u32 {
        grid::ceil_log2(self.width.max(self.height))
    }

    /// The scale divisor of a level (`2^(top - level)`), or `None` beyond the top.
    pub fn scale(&self, level: u32) -> Option<u64> {
        let top = self.max_level();
        (level <= top).then(|| 1u64 << (top - level))
    }

    /// Width and height of a level: `ceil(width / 2^(top - level))`.
    pub fn level_size(&self, level: u32) -> Option<(u32, u32)> {
        let s = self.scale(level)?;
        Some((u64::from(self.width).div_ceil(s) as u32, u64::from(self.height).div_ceil(s) as u32))
    }

    /// Columns and rows of tiles of a level.
    pub fn tiles(&self, level: u32) -> Option<(u32, u32)> {
        let (w, h) = self.level_size(level)?;
        let t = self.tile.max(1);
        Some((w.div_ceil(t), h.div_ceil(t)))
    }

    /// The Image API request of a tile; 404 for a level beyond the top or
    /// a tile outside its level.
    pub fn tile(&self, level: u32, col: u32, row: u32) -> Result<IiifTile> {
        let s = self.scale(level).ok_or_else(|| Error::not_found_msg("No such Deep Zoom level"))?;
        let (lw, lh) = self.level_size(level).ok_or_else(|| Error::not_found_msg("No such Deep Zoom level"))?;
        let (t, o) = (u64::from(self.tile.max(1)), u64::from(self.overlap));
        let span = |i: u32, len: u32| {
            let start = u64::from(i) * t;
            (start.saturating_sub(if i > 0 { o } else { 0 }), (start + t + o).min(u64::from(len)), start)
        };
        let (x0, x1, cx) = span(col, lw);
        let (y0, y1, cy) = span(row, lh);
        if cx >= u64::from(lw) || cy >= u64::from(lh) {
            return Err(Error::not_found_msg("No such Deep Zoom tile"));
        }
        grid::at_scale(self.width, self.height, s, x0, y0, x1, y1)
            .ok_or_else(|| Error::not_found_msg("No such Deep Zoom tile"))
    }

    /// The `.dzi` descriptor; tiles are announced in `format`.
    pub fn descriptor(&self, format: Format) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <Image xmlns=\"{NAMESPACE}\" TileSize=\"{}\" Overlap=\"{}\" Format=\"{}\">\
             <Size Width=\"{}\" Height=\"{}\"/></Image>\n",
            self.tile,
            self.overlap,
            format.extension(),
            self.width,
            self.height
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Rect;

    fn g(width: u32, height: u32, tile: u32, overlap: u32) -> Geometry {
        Geometry { width, height, tile, overlap }
    }

    #[test]
    fn paths_parse_into_descriptors_and_tiles() {
        assert_eq!(parse("photo.dzi").unwrap(), DziPath::Descriptor { raw_id: "photo" });
        assert_eq!(parse("a%2Fb.jpg.dzi").unwrap(), DziPath::Descriptor { raw_id: "a%2Fb.jpg" });
        assert_eq!(
            parse("my_files_files/12/3_4.png").unwrap(),
            DziPath::Tile { raw_id: "my_files", level: 12, col: 3, row: 4, format: Format::Png }
        );
        assert_eq!(
            parse("p_files/0/0_0.jpg").unwrap(),
            DziPath::Tile { raw_id: "p", level: 0, col: 0, row: 0, format: Format::Jpg }
        );
    }

    #[test]
    fn other_shapes_are_404_and_bad_names_400() {
        for p in [
            "",
            ".dzi",
            "photo",
            "photo.xml",
            "_files/1/0_0.jpg",
            "photo/1/0_0.jpg",
            "p_files/1/0_0.jpg/x",
            "p_files/1",
        ] {
            assert_eq!(parse(p).unwrap_err().status(), http::StatusCode::NOT_FOUND, "{p}");
        }
        for p in [
            "p_files/x/0_0.jpg",
            "p_files/1/0-0.jpg",
            "p_files/1/a_0.jpg",
            "p_files/1/0_0.gif",
            "p_files/1/0_0",
            "p_files/-1/0_0.jpg",
            "p_files/1/0_+1.jpg",
        ] {
            assert_eq!(parse(p).unwrap_err().status(), http::StatusCode::BAD_REQUEST, "{p}");
        }
    }

    #[test]
    fn levels_follow_deep_zoom_from_one_pixel_to_full_size() {
        let geo = g(1200, 800, 256, 0);
        assert_eq!(geo.max_level(), 11, "2^11 = 2048 ≥ 1200 > 1024");
        assert_eq!(geo.level_size(11), Some((1200, 800)));
        assert_eq!(geo.level_size(10), Some((600, 400)));
        assert_eq!(geo.level_size(0), Some((1, 1)));
        assert_eq!(geo.level_size(12), None);
        assert_eq!(g(1001, 3, 256, 0).level_size(9), Some((501, 2)), "ceil on both axes");
        assert_eq!(g(1, 1, 256, 0).max_level(), 0);
    }

    #[test]
    fn tiles_without_overlap_are_the_iiif_grid() {
        let geo = g(1200, 800, 256, 0);
        let t = geo.tile(10, 2, 1).unwrap();
        assert_eq!(t.region, Rect { x: 1024, y: 512, w: 176, h: 288 });
        assert_eq!((t.width, t.height), (88, 144));
        let full = geo.tile(11, 4, 3).unwrap();
        assert_eq!(full.region, Rect { x: 1024, y: 768, w: 176, h: 32 });
        assert_eq!((full.width, full.height), (176, 32));
        assert_eq!(geo.tiles(11), Some((5, 4)));
    }

    #[test]
    fn overlap_adds_pixels_on_every_inner_edge_only() {
        let geo = g(1200, 800, 256, 2);
        let first = geo.tile(11, 0, 0).unwrap();
        assert_eq!(first.region, Rect { x: 0, y: 0, w: 258, h: 258 });
        let inner = geo.tile(11, 1, 1).unwrap();
        assert_eq!(inner.region, Rect { x: 254, y: 254, w: 260, h: 260 });
        let last = geo.tile(11, 4, 3).unwrap();
        assert_eq!(last.region, Rect { x: 1022, y: 766, w: 178, h: 34 });
        // At 1/2 the overlap is counted in level pixels.
        let half = geo.tile(10, 2, 0).unwrap();
        assert_eq!(half.region, Rect { x: 1020, y: 0, w: 180, h: 516 });
        assert_eq!((half.width, half.height), (90, 258));
    }

    #[test]
    fn tiles_outside_their_level_and_levels_beyond_the_top_are_404() {
        let geo = g(1200, 800, 256, 1);
        for (l, c, r) in
            [(11, 5, 0), (11, 0, 4), (10, 3, 0), (0, 1, 0), (12, 0, 0), (u32::MAX, 0, 0), (11, u32::MAX, 0)]
        {
            assert_eq!(geo.tile(l, c, r).unwrap_err().status(), http::StatusCode::NOT_FOUND, "{l}/{c}_{r}");
        }
    }

    #[test]
    fn every_tile_of_every_level_covers_its_level_exactly() {
        for (w, h, t, o) in [(1200, 800, 256, 0), (1001, 777, 254, 1), (5, 3000, 64, 3), (1, 1, 256, 0)] {
            let geo = g(w, h, t, o);
            for level in 0..=geo.max_level() {
                let (lw, lh) = geo.level_size(level).unwrap();
                let (cols, rows) = geo.tiles(level).unwrap();
                let mut covered = 0u64;
                for c in 0..cols {
                    for r in 0..rows {
                        let tile = geo.tile(level, c, r).unwrap();
                        let core_w = (lw - c * t).min(t);
                        let core_h = (lh - r * t).min(t);
                        covered += u64::from(core_w) * u64::from(core_h);
                        // Overlap on inner edges, as far as the level reaches.
                        let extra_w = if c > 0 { o } else { 0 } + o.min(lw - c * t - core_w);
                        let extra_h = if r > 0 { o } else { 0 } + o.min(lh - r * t - core_h);
                        assert_eq!(
                            (tile.width, tile.height),
                            (core_w + extra_w, core_h + extra_h),
                            "{w}x{h} {level}/{c}_{r}"
                        );
                    }
                }
                assert_eq!(covered, u64::from(lw) * u64::from(lh));
            }
        }
    }

    #[test]
    fn the_descriptor_names_size_tile_size_overlap_and_format() {
        let x = g(1200, 800, 510, 1).descriptor(Format::Jpg);
        assert!(x.starts_with("<?xml"));
        assert!(x.contains(&format!("xmlns=\"{NAMESPACE}\"")));
        for part in ["TileSize=\"510\"", "Overlap=\"1\"", "Format=\"jpg\"", "<Size Width=\"1200\" Height=\"800\"/>"] {
            assert!(x.contains(part), "{part} in {x}");
        }
    }
}
