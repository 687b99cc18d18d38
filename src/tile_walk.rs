//! The tile requests a deep-zoom viewer (OpenSeadragon, and Mirador through
//! it) makes for an image, computed from info.json's tiles and scale factors
//! the way OpenSeadragon's IIIF tile source does: per scale factor `s`, tiles
//! of `tile·s` source pixels, edge tiles clipped, each asked at
//! `ceil(region / s)` wide with the `w,` size syntax, and `full` once the
//! whole image fits one tile. Pure; used by cache warming and load tests.

/// One tile request, as the `{region}/{size}` part of an Image API URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TileRequest {
    pub scale_factor: u32,
    pub region: String,
    pub size: String,
}

impl TileRequest {
    /// `{region}/{size}/0/default.jpg`
    pub fn path(&self) -> String {
        format!("{}/{}/0/default.jpg", self.region, self.size)
    }
}

/// All tiles of one level.
pub fn level_tiles(width: u32, height: u32, tile_w: u32, tile_h: u32, sf: u32) -> Vec<TileRequest> {
    let (tw, th) = (tile_w as u64 * sf as u64, tile_h as u64 * sf as u64);
    let (w, h) = (width as u64, height as u64);
    if tw == 0 || th == 0 || w == 0 || h == 0 {
        return Vec::new();
    }
    if tw >= w && th >= h {
        let ow = w.div_ceil(sf as u64);
        return vec![TileRequest { scale_factor: sf, region: "full".into(), size: format!("{ow},") }];
    }
    let mut out = Vec::new();
    let mut y = 0;
    while y < h {
        let rh = th.min(h - y);
        let mut x = 0;
        while x < w {
            let rw = tw.min(w - x);
            let ow = rw.div_ceil(sf as u64);
            out.push(TileRequest { scale_factor: sf, region: format!("{x},{y},{rw},{rh}"), size: format!("{ow},") });
            x += tw;
        }
        y += th;
    }
    out
}

/// Tiles of the coarsest levels, coarsest first, stopping before the total
/// would exceed `max_tiles` — what a viewer needs first.
pub fn first_levels(
    width: u32,
    height: u32,
    tile_w: u32,
    tile_h: u32,
    scale_factors: &[u32],
    max_tiles: usize,
) -> Vec<TileRequest> {
    let mut sfs: Vec<u32> = scale_factors.to_vec();
    sfs.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = Vec::new();
    for sf in sfs {
        let level = level_tiles(width, height, tile_w, tile_h, sf);
        if !out.is_empty() && out.len() + level.len() > max_tiles {
            break;
        }
        out.extend(level);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_tiles_are_clipped_and_sized_by_ceiling() {
        let t = level_tiles(4000, 3000, 256, 256, 8);
        assert_eq!(t.len(), 2 * 2);
        assert_eq!(t[0].region, "0,0,2048,2048");
        assert_eq!(t[0].size, "256,");
        assert_eq!(t[1].region, "2048,0,1952,2048");
        assert_eq!(t[1].size, "244,");
        assert_eq!(t[3].region, "2048,2048,1952,952");
    }

    #[test]
    fn a_level_that_fits_one_tile_asks_for_full() {
        let t = level_tiles(4000, 3000, 256, 256, 16);
        assert_eq!(t, vec![TileRequest { scale_factor: 16, region: "full".into(), size: "250,".into() }]);
    }

    #[test]
    fn first_levels_go_coarsest_first_within_the_budget() {
        let t = first_levels(4000, 3000, 256, 256, &[1, 2, 4, 8, 16], 30);
        assert_eq!(t[0].scale_factor, 16);
        assert_eq!(t.iter().filter(|r| r.scale_factor == 8).count(), 4);
        assert_eq!(t.iter().filter(|r| r.scale_factor == 4).count(), 12);
        assert!(t.iter().all(|r| r.scale_factor >= 4));
    }
}
