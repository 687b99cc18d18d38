//! Zoomify, the pure part: the paths `/zoomify/{id}/ImageProperties.xml`
//! and `/zoomify/{id}/TileGroup{n}/{z}-{x}-{y}.jpg`, the ImageProperties
//! XML, the tiers and tile groups, and a tile's region and size.
//!
//! Tiers, tile counts and groups are computed as OpenSeadragon 6.1.1's
//! `ZoomifyTileSource` computes them, since that is the viewer that asks:
//! from the full size, each smaller tier is the previous one halved and
//! rounded *down* (`Math.floor`), while either side is above the tile
//! size; tier `z` counts from the smallest (0). A tile's group is its index
//! over all tiers (smallest tier first, rows of each tier in order) divided
//! by 256, rounded down, whatever the tile size. Which tiles exist is
//! OpenSeadragon's `TileSource.getNumTiles`: `ceil(width / 2^k / tile)`
//! at `k` halvings, so a tile reaching the last (odd) full-resolution
//! pixels that a rounded-down tier drops is still served.

use super::grid::{self, IiifTile};
use crate::error::{Error, Result};

/// Tile indices per group, fixed by the format.
pub const TILES_PER_GROUP: u64 = 256;

/// A request under `/zoomify/`, before the identifier is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoomifyPath<'a> {
    /// `{id}/ImageProperties.xml`.
    Properties { raw_id: &'a str },
    /// `{id}/TileGroup{group}/{z}-{x}-{y}.jpg`.
    Tile { raw_id: &'a str, group: u32, z: u32, x: u32, y: u32 },
}

/// Parses the path after `/zoomify/`. A path of another shape is 404; a
/// tile name whose numbers or extension are not Zoomify's is 400.
pub fn parse(rest: &str) -> Result<ZoomifyPath<'_>> {
    let mut parts = rest.split('/');
    let not_found = || Error::not_found_msg("Not found");
    let raw_id = parts.next().filter(|id| !id.is_empty()).ok_or_else(not_found)?;
    match (parts.next(), parts.next(), parts.next()) {
        (Some("ImageProperties.xml"), None, None) => Ok(ZoomifyPath::Properties { raw_id }),
        (Some(group), Some(name), None) => {
            let group = group.strip_prefix("TileGroup").ok_or_else(not_found)?;
            let bad = || Error::bad_request("A Zoomify tile is TileGroup{n}/{tier}-{column}-{row}.jpg");
            let group = grid::number(group).ok_or_else(bad)?;
            let stem = match name.rsplit_once('.') {
                Some((stem, "jpg")) => stem,
                Some(_) => return Err(Error::bad_request("Zoomify tiles are jpg")),
                None => return Err(bad()),
            };
            let mut n = stem.split('-').map(grid::number);
            match (n.next(), n.next(), n.next(), n.next()) {
                (Some(Some(z)), Some(Some(x)), Some(Some(y)), None) => Ok(ZoomifyPath::Tile { raw_id, group, z, x, y }),
                _ => Err(bad()),
            }
        }
        _ => Err(not_found()),
    }
}

/// An image as Zoomify presents it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pyramid {
    pub width: u32,
    pub height: u32,
    /// TILESIZE, at least 1.
    pub tile: u32,
    /// Columns and rows of each tier's grid as OpenSeadragon numbers
    /// tiles (its `gridSize`), smallest tier first.
    grids: Vec<(u64, u64)>,
}

impl Pyramid {
    pub fn new(width: u32, height: u32, tile: u32) -> Pyramid {
        let t = u64::from(tile.max(1));
        let (mut w, mut h) = (u64::from(width), u64::from(height));
        let mut grids = vec![(w.div_ceil(t), h.div_ceil(t))];
        while w > t || h > t {
            w /= 2;
            h /= 2;
            grids.push((w.div_ceil(t), h.div_ceil(t)));
        }
        grids.reverse();
        Pyramid { width, height, tile: tile.max(1), grids }
    }

    /// The number of tiers.
    pub fn tiers(&self) -> u32 {
        self.grids.len() as u32
    }

    /// NUMTILES: the tiles of every tier's grid.
    pub fn num_tiles(&self) -> u64 {
        self.grids.iter().map(|(c, r)| c * r).sum()
    }

    /// The halvings from full resolution to tier `z` (`None` past the top).
    fn halvings(&self, z: u32) -> Option<u32> {
        self.tiers().checked_sub(1)?.checked_sub(z)
    }

    /// Columns and rows of tiles OpenSeadragon asks at tier `z`
    /// (`ceil(width / 2^k / tile)`).
    pub fn tiles(&self, z: u32) -> Option<(u32, u32)> {
        let k = self.halvings(z)?;
        let span = u64::from(self.tile) << k;
        Some((u64::from(self.width).div_ceil(span) as u32, u64::from(self.height).div_ceil(span) as u32))
    }

    /// The TileGroup of a tile (which may lie past the tier's grid, as
    /// OpenSeadragon computes it then too).
    pub fn group(&self, z: u32, x: u32, y: u32) -> Option<u64> {
        let (cols, _) = *self.grids.get(z as usize)?;
        let before: u64 = self.grids[..z as usize].iter().map(|(c, r)| c * r).sum();
        Some((before + cols * u64::from(y) + u64::from(x)) / TILES_PER_GROUP)
    }

    /// The Image API request of a tile; 404 for a tier or tile that does
    /// not exist or a group that is not the tile's.
    pub fn tile(&self, group: u32, z: u32, x: u32, y: u32) -> Result<IiifTile> {
        let k = self.halvings(z).ok_or_else(|| Error::not_found_msg("No such Zoomify tier"))?;
        let (cols, rows) = self.tiles(z).ok_or_else(|| Error::not_found_msg("No such Zoomify tier"))?;
        if x >= cols || y >= rows {
            return Err(Error::not_found_msg("No such Zoomify tile"));
        }
        if self.group(z, x, y) != Some(u64::from(group)) {
            return Err(Error::not_found_msg("No such Zoomify tile group"));
        }
        let (t, s) = (u64::from(self.tile), 1u64 << k);
        let (x, y) = (u64::from(x), u64::from(y));
        grid::at_scale(self.width, self.height, s, x * t, y * t, (x + 1) * t, (y + 1) * t)
            .ok_or_else(|| Error::not_found_msg("No such Zoomify tile"))
    }

    /// ImageProperties.xml.
    pub fn properties(&self) -> String {
        format!(
            "<IMAGE_PROPERTIES WIDTH=\"{}\" HEIGHT=\"{}\" NUMTILES=\"{}\" NUMIMAGES=\"1\" VERSION=\"1.8\" TILESIZE=\"{}\" />\n",
            self.width,
            self.height,
            self.num_tiles(),
            self.tile
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Rect;
    use http::StatusCode;

    /// OpenSeadragon 6.1.1's `ZoomifyTileSource` constructor and
    /// `_calculateAbsoluteTileNumber`, transcribed line by line (floating
    /// point as JavaScript has it).
    fn osd(width: u32, height: u32, tile: u32) -> Vec<(u64, u64)> {
        let t = f64::from(tile);
        let (mut x, mut y) = (f64::from(width), f64::from(height));
        let mut grid = vec![((x / t).ceil() as u64, (y / t).ceil() as u64)];
        while x > t || y > t {
            x = (x / 2.0).floor();
            y = (y / 2.0).floor();
            grid.push(((x / t).ceil() as u64, (y / t).ceil() as u64));
        }
        grid.reverse();
        grid
    }

    fn osd_group(grid: &[(u64, u64)], level: usize, x: u64, y: u64) -> u64 {
        let mut num = 0;
        for g in &grid[..level] {
            num += g.0 * g.1;
        }
        num += grid[level].0 * y + x;
        (num as f64 / 256.0).floor() as u64
    }

    #[test]
    fn paths_parse_into_properties_and_tiles() {
        assert_eq!(parse("photo/ImageProperties.xml").unwrap(), ZoomifyPath::Properties { raw_id: "photo" });
        assert_eq!(
            parse("a%2Fb/TileGroup3/4-10-2.jpg").unwrap(),
            ZoomifyPath::Tile { raw_id: "a%2Fb", group: 3, z: 4, x: 10, y: 2 }
        );
    }

    #[test]
    fn other_shapes_are_404_and_bad_names_400() {
        for p in [
            "",
            "photo",
            "photo/",
            "/ImageProperties.xml",
            "photo/imageproperties.xml",
            "photo/Group0/0-0-0.jpg",
            "photo/TileGroup0/0-0-0.jpg/x",
        ] {
            assert_eq!(parse(p).unwrap_err().status(), StatusCode::NOT_FOUND, "{p}");
        }
        for p in [
            "photo/TileGroupx/0-0-0.jpg",
            "photo/TileGroup0/0-0.jpg",
            "photo/TileGroup0/0-0-0-0.jpg",
            "photo/TileGroup0/0-a-0.jpg",
            "photo/TileGroup0/0-0-0.png",
            "photo/TileGroup0/0-0-0",
            "photo/TileGroup-1/0-0-0.jpg",
        ] {
            assert_eq!(parse(p).unwrap_err().status(), StatusCode::BAD_REQUEST, "{p}");
        }
    }

    #[test]
    fn tiers_and_groups_are_openseadragons() {
        for (w, h) in
            [(1200, 800), (6000, 4000), (513, 300), (100_000, 3), (1, 1), (256, 256), (257, 256), (10000, 8000)]
        {
            let p = Pyramid::new(w, h, 256);
            let grid = osd(w, h, 256);
            assert_eq!(p.grids, grid, "{w}x{h}");
            assert_eq!(p.num_tiles(), grid.iter().map(|(c, r)| c * r).sum::<u64>());
            for z in 0..p.tiers() {
                let (cols, rows) = p.tiles(z).unwrap();
                for y in 0..rows {
                    for x in 0..cols {
                        let g = p.group(z, x, y).unwrap();
                        assert_eq!(g, osd_group(&grid, z as usize, x.into(), y.into()), "{w}x{h} {z}-{x}-{y}");
                        assert!(p.tile(g as u32, z, x, y).is_ok());
                    }
                }
            }
        }
    }

    #[test]
    fn tiles_are_the_iiif_tiles_of_their_tier() {
        let p = Pyramid::new(1200, 800, 256);
        assert_eq!(p.tiers(), 4, "1200, 600, 300, 150");
        let top = p.tile(0, 3, 4, 3).unwrap();
        assert_eq!(top.region, Rect { x: 1024, y: 768, w: 176, h: 32 });
        assert_eq!((top.width, top.height), (176, 32));
        let g = p.group(1, 1, 0).unwrap() as u32;
        let t = p.tile(g, 1, 1, 0).unwrap();
        assert_eq!(t.region, Rect { x: 1024, y: 0, w: 176, h: 800 });
        assert_eq!((t.width, t.height), (44, 200));
    }

    #[test]
    fn a_tile_past_the_rounded_down_grid_still_reaches_the_last_pixels() {
        // 513 wide: the tier at 1/2 is 256 (rounded down), one tile in
        // OpenSeadragon's grid, but it asks ceil(513 / 2 / 256) = 2.
        let p = Pyramid::new(513, 100, 256);
        assert_eq!(p.tiles(0), Some((2, 1)));
        let g = p.group(0, 1, 0).unwrap() as u32;
        let t = p.tile(g, 0, 1, 0).unwrap();
        assert_eq!(t.region, Rect { x: 512, y: 0, w: 1, h: 100 });
        assert_eq!((t.width, t.height), (1, 50));
    }

    #[test]
    fn missing_tiers_tiles_and_wrong_groups_are_404() {
        let p = Pyramid::new(6000, 4000, 256);
        let top = p.tiers() - 1;
        let (cols, rows) = p.tiles(top).unwrap();
        let g = |z, x, y| p.group(z, x, y).unwrap() as u32;
        for (group, z, x, y) in [
            (0, p.tiers(), 0, 0),
            (g(top, cols - 1, 0), top, cols, 0),
            (g(top, 0, rows - 1), top, 0, rows),
            (g(top, 0, 0) + 1, top, 0, 0),
            (0, top, u32::MAX, 0),
        ] {
            assert_eq!(p.tile(group, z, x, y).unwrap_err().status(), StatusCode::NOT_FOUND, "{group} {z}-{x}-{y}");
        }
    }

    #[test]
    fn the_properties_name_size_tile_count_and_tile_size() {
        let p = Pyramid::new(1200, 800, 256);
        let x = p.properties();
        // 1200×800: 5×4 + 3×2 + 2×1 + 1×1 tiles.
        assert_eq!(p.num_tiles(), 20 + 6 + 2 + 1);
        for part in [
            "WIDTH=\"1200\"",
            "HEIGHT=\"800\"",
            "NUMTILES=\"29\"",
            "NUMIMAGES=\"1\"",
            "VERSION=\"1.8\"",
            "TILESIZE=\"256\"",
        ] {
            assert!(x.contains(part), "{part} in {x}");
        }
        assert!(x.starts_with("<IMAGE_PROPERTIES ") && x.trim_end().ends_with("/>"));
    }
}
