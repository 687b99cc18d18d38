//! Deep Zoom (DZI) and Zoomify through the service, in process: the
//! descriptors against the image's own size, every tile against the IIIF
//! tile of the same region and size from the same server (pixel for pixel,
//! overlap aside), the shared cache entries, and the refusals. Expected
//! values are computed here from info.json's width, height and tile size,
//! with the arithmetic of each protocol written out again (Zoomify's as
//! OpenSeadragon 6.1.1's `ZoomifyTileSource` has it).

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http::{Method, Response, StatusCode};
use serde_json::Value;
use tessera::cache::Tier;
use tessera::codec::encode;
use tessera::iiif::Format;
use tessera::service::App;

const ID: &str = "photo.jpg";

/// The value of attribute `name` in an XML text (its first occurrence).
fn attr(xml: &str, name: &str) -> u64 {
    let key = format!(" {name}=\"");
    let start = xml.find(&key).unwrap_or_else(|| panic!("{name} in {xml}")) + key.len();
    let end = start + xml[start..].find('"').unwrap();
    xml[start..end].parse().unwrap_or_else(|_| panic!("{name} is a number in {xml}"))
}

fn text(r: &Response<Bytes>) -> String {
    String::from_utf8(r.body().to_vec()).unwrap()
}

/// Width, height and advertised tile width of an image's info.json.
async fn info(app: &Arc<App>, id: &str) -> (u64, u64, u64) {
    let r = get(app, &format!("/iiif/2/{id}/info.json")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = serde_json::from_slice(r.body()).unwrap();
    (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap(), v["tiles"][0]["width"].as_u64().unwrap())
}

/// A tile as the Image API request of its region (full-resolution pixels)
/// and size.
#[derive(Debug, Clone, Copy)]
struct Req {
    x: u64,
    y: u64,
    w: u64,
    h: u64,
    sw: u64,
    sh: u64,
}

impl Req {
    fn iiif(&self, id: &str, ext: &str) -> String {
        format!("/iiif/2/{id}/{},{},{},{}/{},{}/0/default.{ext}", self.x, self.y, self.w, self.h, self.sw, self.sh)
    }
}

/// Deep Zoom's levels, written out: top = ceil(log2(max side)), level L
/// is ceil(side / 2^(top - L)), tiles of `t` with `o` more pixels on
/// inner edges; a level-pixel span times the scale is the region, clipped
/// to the image, and the size is the level span.
struct Dzi {
    w: u64,
    h: u64,
    t: u64,
    o: u64,
}

impl Dzi {
    fn top(&self) -> u32 {
        (0..=32).find(|l| (1u64 << l) >= self.w.max(self.h)).unwrap()
    }
    fn scale(&self, level: u32) -> u64 {
        1 << (self.top() - level)
    }
    fn level(&self, level: u32) -> (u64, u64) {
        let s = self.scale(level);
        (self.w.div_ceil(s), self.h.div_ceil(s))
    }
    fn grid(&self, level: u32) -> (u64, u64) {
        let (lw, lh) = self.level(level);
        (lw.div_ceil(self.t), lh.div_ceil(self.t))
    }
    /// The tile's level-pixel span on one axis, with its overlap.
    fn span(&self, i: u64, len: u64) -> (u64, u64) {
        let start = i * self.t;
        let a = if i > 0 { start - self.o } else { start };
        (a, (start + self.t + self.o).min(len))
    }
    /// The tile without overlap: the core, as the IIIF grid has it.
    fn core(&self, level: u32, c: u64, r: u64) -> Req {
        self.req(
            level,
            (c * self.t, ((c + 1) * self.t).min(self.level(level).0)),
            (r * self.t, ((r + 1) * self.t).min(self.level(level).1)),
        )
    }
    fn tile(&self, level: u32, c: u64, r: u64) -> Req {
        let (lw, lh) = self.level(level);
        self.req(level, self.span(c, lw), self.span(r, lh))
    }
    fn req(&self, level: u32, (x0, x1): (u64, u64), (y0, y1): (u64, u64)) -> Req {
        let s = self.scale(level);
        let (x, y) = (x0 * s, y0 * s);
        let (w, h) = ((x1 * s).min(self.w) - x, (y1 * s).min(self.h) - y);
        Req { x, y, w, h, sw: x1 - x0, sh: y1 - y0 }
    }
}

/// OpenSeadragon 6.1.1's Zoomify tiers, written out: from the full size,
/// halve and round down while a side exceeds the tile; `gridSize` is
/// ceil(tier / tile); a tile's group is its index over the tiers
/// (smallest first) / 256. Tiles are asked for `ceil(width / 2^k / tile)`
/// columns.
struct Zoomify {
    w: u64,
    h: u64,
    t: u64,
    grids: Vec<(u64, u64)>,
}

impl Zoomify {
    fn new(w: u64, h: u64, t: u64) -> Zoomify {
        let (mut x, mut y) = (w, h);
        let mut grids = vec![(x.div_ceil(t), y.div_ceil(t))];
        while x > t || y > t {
            x /= 2;
            y /= 2;
            grids.push((x.div_ceil(t), y.div_ceil(t)));
        }
        grids.reverse();
        Zoomify { w, h, t, grids }
    }
    fn num_tiles(&self) -> u64 {
        self.grids.iter().map(|(c, r)| c * r).sum()
    }
    fn scale(&self, z: usize) -> u64 {
        1 << (self.grids.len() - 1 - z)
    }
    fn asked(&self, z: usize) -> (u64, u64) {
        let span = self.t * self.scale(z);
        (self.w.div_ceil(span), self.h.div_ceil(span))
    }
    fn group(&self, z: usize, x: u64, y: u64) -> u64 {
        let before: u64 = self.grids[..z].iter().map(|(c, r)| c * r).sum();
        (before + self.grids[z].0 * y + x) / 256
    }
    fn url(&self, id: &str, z: usize, x: u64, y: u64) -> String {
        format!("/zoomify/{id}/TileGroup{}/{z}-{x}-{y}.jpg", self.group(z, x, y))
    }
    fn req(&self, z: usize, x: u64, y: u64) -> Req {
        let s = self.scale(z);
        let (rx, ry) = (x * self.t * s, y * self.t * s);
        let (w, h) = ((self.t * s).min(self.w - rx), (self.t * s).min(self.h - ry));
        Req { x: rx, y: ry, w, h, sw: w.div_ceil(s), sh: h.div_ceil(s) }
    }
}

async fn ok(app: &Arc<App>, path: &str) -> Response<Bytes> {
    let r = get(app, path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}: {}", text(&r));
    r
}

/// Asserts that `a`, less `left`/`top`/`right`/`bottom` overlap pixels, is
/// pixel for pixel `b`.
fn assert_core_equal(a: &[u8], b: &[u8], what: &str, edges: (u64, u64, u64, u64)) {
    let (pa, pb) = (decode_any(a), decode_any(b));
    let (l, t, r, btm) = edges;
    assert_eq!(pa.layout(), pb.layout(), "{what}");
    assert_eq!(
        (u64::from(pa.width()), u64::from(pa.height())),
        (u64::from(pb.width()) + l + r, u64::from(pb.height()) + t + btm),
        "{what}: size"
    );
    let bpp = pa.layout().channels();
    let row = pb.width() as usize * bpp;
    for y in 0..pb.height() as usize {
        let ra = &pa.data()[(y + t as usize) * pa.stride() + l as usize * bpp..][..row];
        let rb = &pb.data()[y * pb.stride()..][..row];
        if ra != rb {
            let first = ra.iter().zip(rb).position(|(a, b)| a != b).unwrap_or(0) / bpp;
            panic!("{what}: row {y} differs from column {first}");
        }
    }
}

#[tokio::test]
async fn descriptors_give_the_images_size_tile_size_overlap_and_tile_count() {
    let d = image_dir();
    let jp2 = tiled_jp2(&picture(1000, 700), 256);
    std::fs::write(d.path().join("tiled.jp2"), jp2).unwrap();
    for (extra, overlap) in [("", 0), ("[deepzoom]\noverlap = 1", 1)] {
        let app = app(d.path(), extra);
        for id in [ID, "tiled.jp2"] {
            let (w, h, t) = info(&app, id).await;
            let r = ok(&app, &format!("/dzi/{id}.dzi")).await;
            assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/xml"));
            let x = text(&r);
            assert!(x.contains("<Image xmlns=\"http://schemas.microsoft.com/deepzoom/2008\""), "{x}");
            assert!(x.contains("Format=\"jpg\""), "{x}");
            assert_eq!((attr(&x, "Width"), attr(&x, "Height")), (w, h), "{id}");
            assert_eq!(attr(&x, "TileSize"), t, "{id}: the tile size info.json advertises");
            assert_eq!(attr(&x, "Overlap"), overlap);

            let r = ok(&app, &format!("/zoomify/{id}/ImageProperties.xml")).await;
            assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/xml"));
            let x = text(&r);
            assert!(x.starts_with("<IMAGE_PROPERTIES "), "{x}");
            assert_eq!((attr(&x, "WIDTH"), attr(&x, "HEIGHT")), (w, h));
            assert_eq!(attr(&x, "TILESIZE"), app.cfg.zoomify.tile_size as u64);
            assert_eq!(attr(&x, "NUMTILES"), Zoomify::new(w, h, app.cfg.zoomify.tile_size.into()).num_tiles());
            assert_eq!(attr(&x, "NUMIMAGES"), 1);
            assert!(x.contains("VERSION=\"1.8\""));
        }
    }
}

#[tokio::test]
async fn without_overlap_every_dzi_tile_of_small_levels_and_the_full_level_is_the_iiif_tile_of_its_region() {
    let d = image_dir();
    let app = app(d.path(), "");
    let (w, h, t) = info(&app, ID).await;
    let dzi = Dzi { w, h, t, o: 0 };
    let top = dzi.top();
    let mut tiles = 0;
    for level in [top - 3, top - 1, top] {
        let (cols, rows) = dzi.grid(level);
        for c in 0..cols {
            for r in 0..rows {
                let q = dzi.tile(level, c, r);
                for ext in ["png", "jpg"] {
                    let z = ok(&app, &format!("/dzi/{ID}_files/{level}/{c}_{r}.{ext}")).await;
                    let i = ok(&app, &q.iiif(ID, ext)).await;
                    assert_eq!(z.headers()["content-type"], i.headers()["content-type"]);
                    assert_eq!(z.headers()["etag"], i.headers()["etag"], "the same canonical request");
                    assert_core_equal(z.body(), i.body(), &format!("{level}/{c}_{r}.{ext}"), (0, 0, 0, 0));
                    tiles += 1;
                }
            }
        }
    }
    assert!(tiles > 4, "{tiles} tiles compared");
}

#[tokio::test]
async fn with_overlap_one_every_dzi_tile_is_its_iiif_tile_plus_the_overlap() {
    // A lossless source without chroma subsampling: a JPEG decoded in a
    // crop upsamples its chroma at the crop's edge without the neighbour
    // column, so the last core column of a JPEG's IIIF tile differs by a
    // few levels from the same column decoded with its overlap.
    const ID: &str = "chart.png";
    let d = image_dir();
    std::fs::write(d.path().join(ID), encode::encode(&picture(1200, 800), Format::Png, 90).unwrap()).unwrap();
    let app = app(d.path(), "[deepzoom]\ntile_size = 256\noverlap = 1");
    let (w, h, _) = info(&app, ID).await;
    let dzi = Dzi { w, h, t: 256, o: 1 };
    let top = dzi.top();
    // At full resolution the overlap is exact pixels of the neighbours, so
    // the core is pixel for pixel the IIIF tile of the core's region.
    let (cols, rows) = dzi.grid(top);
    assert!(cols > 2 && rows > 2);
    for c in 0..cols {
        for r in 0..rows {
            let z = ok(&app, &format!("/dzi/{ID}_files/{top}/{c}_{r}.png")).await;
            let core = ok(&app, &dzi.core(top, c, r).iiif(ID, "png")).await;
            let edges = (
                if c > 0 { 1 } else { 0 },
                if r > 0 { 1 } else { 0 },
                if c + 1 < cols { 1 } else { 0 },
                if r + 1 < rows { 1 } else { 0 },
            );
            assert_core_equal(z.body(), core.body(), &format!("{top}/{c}_{r}"), edges);
        }
    }
    // At a reduced level every tile is the IIIF request of its region with
    // the overlap included, at the level's size.
    let level = top - 2;
    let (cols, rows) = dzi.grid(level);
    assert!(cols > 1);
    for c in 0..cols {
        for r in 0..rows {
            let q = dzi.tile(level, c, r);
            let z = ok(&app, &format!("/dzi/{ID}_files/{level}/{c}_{r}.png")).await;
            let i = ok(&app, &q.iiif(ID, "png")).await;
            assert_core_equal(z.body(), i.body(), &format!("{level}/{c}_{r}"), (0, 0, 0, 0));
        }
    }
}

#[tokio::test]
async fn every_zoomify_tile_is_the_iiif_tile_of_its_region() {
    let d = image_dir();
    let app = app(d.path(), "");
    let (w, h, _) = info(&app, ID).await;
    let zf = Zoomify::new(w, h, app.cfg.zoomify.tile_size.into());
    let mut n = 0;
    for z in 0..zf.grids.len() {
        let (cols, rows) = zf.asked(z);
        for x in 0..cols {
            for y in 0..rows {
                let t = ok(&app, &zf.url(ID, z, x, y)).await;
                let i = ok(&app, &zf.req(z, x, y).iiif(ID, "jpg")).await;
                assert_eq!(t.headers()["content-type"], "image/jpeg");
                assert_core_equal(t.body(), i.body(), &format!("{z}-{x}-{y}"), (0, 0, 0, 0));
                n += 1;
            }
        }
    }
    assert_eq!(n, zf.num_tiles(), "1200 × 800 halves evenly: the tiles asked are the tiles counted");
}

#[tokio::test]
async fn without_overlap_a_dzi_or_zoomify_tile_asked_after_its_iiif_tile_is_a_memory_cache_hit() {
    let d = image_dir();
    // Zoomify at the IIIF tile size, so that its tiles are IIIF tiles too.
    let app = app(d.path(), "[zoomify]\ntile_size = 512");
    let (w, h, t) = info(&app, ID).await;
    let dzi = Dzi { w, h, t, o: 0 };
    let level = dzi.top() - 1;
    let q = dzi.tile(level, 1, 0);
    // As a IIIF viewer asks it: `w,`.
    let iiif = ok(&app, &format!("/iiif/2/{ID}/{},{},{},{}/{},/0/default.jpg", q.x, q.y, q.w, q.h, q.sw)).await;
    let decodes = app.metrics.decodes.get();
    let z = ok(&app, &format!("/dzi/{ID}_files/{level}/1_0.jpg")).await;
    assert_eq!(z.extensions().get::<Tier>(), Some(&Tier::Memory));
    assert_eq!(z.body(), iiif.body());
    assert_eq!(app.metrics.decodes.get(), decodes, "no decode");
    let again = ok(&app, &format!("/dzi/{ID}_files/{level}/1_0.jpg")).await;
    assert_eq!(again.extensions().get::<Tier>(), Some(&Tier::Hot), "then the hot path");

    let zf = Zoomify::new(w, h, 512);
    let z = zf.grids.len() - 2;
    let iiif = ok(&app, &zf.req(z, 0, 0).iiif(ID, "jpg")).await;
    let decodes = app.metrics.decodes.get();
    let m = text(&get(&app, "/metrics").await);
    let hits = metric_value(&m, "tessera_cache_hits_total").unwrap();
    let t = ok(&app, &zf.url(ID, z, 0, 0)).await;
    assert_eq!(t.extensions().get::<Tier>(), Some(&Tier::Memory));
    assert_eq!(t.body(), iiif.body());
    assert_eq!(app.metrics.decodes.get(), decodes, "no decode");
    let m = text(&get(&app, "/metrics").await);
    assert_eq!(metric_value(&m, "tessera_cache_hits_total").unwrap(), hits + 1.0);
}

#[tokio::test]
async fn missing_levels_tiles_and_images_are_404_and_bad_names_400_without_a_path() {
    let d = image_dir();
    let app = app(d.path(), "");
    let (w, h, t) = info(&app, ID).await;
    let dzi = Dzi { w, h, t, o: 0 };
    let top = dzi.top();
    let (cols, rows) = dzi.grid(top);
    let zf = Zoomify::new(w, h, 256);
    let ztop = zf.grids.len() - 1;
    let (zc, zr) = zf.asked(ztop);
    let wrong_group = format!("/zoomify/{ID}/TileGroup{}/{ztop}-0-0.jpg", zf.group(ztop, 0, 0) + 1);
    let cases: Vec<(String, StatusCode)> = vec![
        (format!("/dzi/{ID}_files/{}/0_0.jpg", top + 1), StatusCode::NOT_FOUND),
        (format!("/dzi/{ID}_files/{top}/{cols}_0.jpg"), StatusCode::NOT_FOUND),
        (format!("/dzi/{ID}_files/{top}/0_{rows}.jpg"), StatusCode::NOT_FOUND),
        (format!("/dzi/{ID}_files/0/1_0.jpg"), StatusCode::NOT_FOUND),
        ("/dzi/no-such-image.dzi".into(), StatusCode::NOT_FOUND),
        ("/dzi/no-such-image_files/0/0_0.jpg".into(), StatusCode::NOT_FOUND),
        ("/dzi/..%2F..%2Fetc%2Fpasswd.dzi".into(), StatusCode::NOT_FOUND),
        (format!("/dzi/{ID}"), StatusCode::NOT_FOUND),
        (format!("/dzi/{ID}_files/{top}/0_0.gif"), StatusCode::BAD_REQUEST),
        (format!("/dzi/{ID}_files/x/0_0.jpg"), StatusCode::BAD_REQUEST),
        (format!("/dzi/{ID}_files/{top}/a_0.jpg"), StatusCode::BAD_REQUEST),
        (format!("/dzi/{ID}_files/{top}/0_0"), StatusCode::BAD_REQUEST),
        (format!("/zoomify/{ID}/TileGroup0/{}-0-0.jpg", ztop + 1), StatusCode::NOT_FOUND),
        (zf.url(ID, ztop, zc, 0), StatusCode::NOT_FOUND),
        (zf.url(ID, ztop, 0, zr), StatusCode::NOT_FOUND),
        (wrong_group, StatusCode::NOT_FOUND),
        ("/zoomify/no-such-image/ImageProperties.xml".into(), StatusCode::NOT_FOUND),
        ("/zoomify/no-such-image/TileGroup0/0-0-0.jpg".into(), StatusCode::NOT_FOUND),
        ("/zoomify/..%2Fphoto.jpg/ImageProperties.xml".into(), StatusCode::NOT_FOUND),
        (format!("/zoomify/{ID}/TileGroup0/0-0-0.png"), StatusCode::BAD_REQUEST),
        (format!("/zoomify/{ID}/TileGroup0/0-0.jpg"), StatusCode::BAD_REQUEST),
        (format!("/zoomify/{ID}/TileGroupx/0-0-0.jpg"), StatusCode::BAD_REQUEST),
    ];
    let root = d.path().to_str().unwrap().to_string();
    for (path, status) in cases {
        let r = get(&app, &path).await;
        let body = text(&r);
        assert_eq!(r.status(), status, "{path}: {body}");
        assert!(!body.contains(&root) && !body.contains("/tmp") && !body.contains(".rs"), "{path}: {body}");
        assert!(body.len() < 200, "{path}: a short message, not {body}");
    }
    // A damaged image is refused as the Image API refuses it.
    for path in [
        "/dzi/garbage.jpg_files/0/0_0.jpg",
        "/dzi/header-only.jpg.dzi",
        "/zoomify/huge-header.png/TileGroup0/0-0-0.jpg",
    ] {
        let r = get(&app, path).await;
        let body = String::from_utf8_lossy(r.body()).to_string();
        assert!(r.status().is_client_error() || r.status().is_server_error(), "{path}: {}", r.status());
        assert!(!body.contains(&root) && !body.contains("/tmp"), "{path}: {body}");
    }
    assert_eq!(get(&app, "/health").await.status(), StatusCode::OK, "still serving");
}

#[tokio::test]
async fn descriptors_and_tiles_carry_cors_validators_and_answer_conditional_and_head_requests() {
    let d = image_dir();
    let app = app(d.path(), "");
    for path in
        [format!("/dzi/{ID}.dzi"), format!("/zoomify/{ID}/ImageProperties.xml"), format!("/dzi/{ID}_files/8/0_0.jpg")]
    {
        let r = ok(&app, &path).await;
        assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        assert!(r.headers()["cache-control"].to_str().unwrap().starts_with("public"), "{path}");
        let again = call(&app, Method::GET, &path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.body().is_empty());
        let head = call(&app, Method::HEAD, &path, &[]).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert!(head.body().is_empty());
        assert_eq!(head.headers()["etag"].to_str().unwrap(), etag);
    }
    let dzi = ok(&app, &format!("/dzi/{ID}.dzi")).await;
    let zoomify = ok(&app, &format!("/zoomify/{ID}/ImageProperties.xml")).await;
    assert_ne!(dzi.headers()["etag"], zoomify.headers()["etag"], "each descriptor has its own ETag");
}

#[tokio::test]
async fn the_home_page_links_each_image_to_its_info_json_dzi_and_zoomify_descriptors_and_off_means_404() {
    let d = image_dir();
    let on = app(d.path(), "");
    let page = text(&get(&on, "/").await);
    for link in
        [format!("/iiif/2/{ID}/info.json"), format!("/dzi/{ID}.dzi"), format!("/zoomify/{ID}/ImageProperties.xml")]
    {
        assert!(page.contains(&format!("href=\"{link}\"")), "{link} in {page}");
        let path = link.clone();
        assert_eq!(get(&on, &path).await.status(), StatusCode::OK, "{link}");
    }
    let off = app(d.path(), "[deepzoom]\nenabled = false\n[zoomify]\nenabled = false");
    let page = text(&get(&off, "/").await);
    assert!(!page.contains("/dzi/") && !page.contains("/zoomify/"), "{page}");
    assert!(page.contains(&format!("/iiif/2/{ID}/info.json")));
    for path in
        [format!("/dzi/{ID}.dzi"), format!("/dzi/{ID}_files/0/0_0.jpg"), format!("/zoomify/{ID}/ImageProperties.xml")]
    {
        assert_eq!(get(&off, &path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
}
