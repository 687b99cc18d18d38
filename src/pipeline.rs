//! The tile pipeline after a memory-cache miss, in one place. A request has
//! been parsed, its source resolved and its plan made (`service`), the
//! memory cache missed, and this runs once per key however many identical
//! requests wait (`flight`). [`run`] is the list of steps; each step is a
//! function below, in order:
//!
//! 1. [`from_tier`]: a tile rendered before, maybe before a restart, is one
//!    file read away (`cache::tier`), or, with several instances, one
//!    Redis read (`cache::shared`). With the shared tier, [`lease`] then
//!    makes sure one instance renders the tile while the others wait for it.
//! 2. [`units`]: the decoded units behind the region (codestream tiles,
//!    virtual tiles of an untiled JPEG 2000, a whole JPEG level), fetched
//!    or decoded on the pool and awaited here, on the reactor, so that no
//!    worker waits for another (`decoded`). Each unit decoded is offered
//!    to eager tiling (`eager`).
//! 3. [`render_on_pool`]: on a worker, the pixels (cut from those units, or
//!    decoded directly from the source), transformed and encoded
//!    (`render::render`). A cut goes ahead of queued decodes; a job whose
//!    every client has gone is skipped.
//! 4. [`keep`]: into the memory cache and the tiers.
//!
//! A step that fails because the source file changed under it drops the
//! opened source, so the next request maps the new file.

use std::sync::Arc;
use std::time::Instant;

use crate::cache::{Encoded, Tier, TileKey};
use crate::codec::ImageInfo;
use crate::decoded::{DecodeInput, GetOrDecodeError};
use crate::error::{Error, Result};
use crate::flight::Wanted;
use crate::iiif::{info, ApiVersion};
use crate::metrics::Stage;
use crate::plan::Plan;
use crate::render::{self, Cut, Input};
use crate::source::{Located, Source};
use crate::state::App;

/// A request resolved and planned, ready to render.
pub struct Prepared {
    pub located: Located,
    pub source: Arc<Source>,
    pub info: Arc<ImageInfo>,
    pub plan: Plan,
}

/// Steps 1 to 4 for one prepared request whose key missed the memory
/// cache; with the tier that answered.
pub async fn run(
    app: &Arc<App>,
    v: ApiVersion,
    key: TileKey,
    p: Prepared,
    wanted: Wanted,
) -> Result<(Arc<Encoded>, Tier)> {
    if let Some((tile, tier)) = from_tier(app, &key).await {
        app.tiles.insert(key, tile.clone());
        return Ok((tile, tier));
    }
    let token = match lease(app, &key).await {
        Ok(token) => token,
        Err(tile) => {
            app.tiles.insert(key, tile.clone());
            return Ok((tile, Tier::Shared));
        }
    };
    // A render may outlast the lease: renew it while this instance works.
    let renewal = match (&app.shared, &token) {
        (Some(shared), Some(t)) => Some(shared.renew(&key, t)),
        _ => None,
    };
    let rendered = async {
        let cut = match units(app, v, &key, &p).await {
            Ok(c) => c,
            Err(e) => {
                app.forget_if_changed(&p.located, &p.source);
                return Err(e);
            }
        };
        render_on_pool(app, p, cut, wanted).await
    }
    .await;
    let (rendered, origin_waits) = match rendered {
        Ok((tile, n)) => (Ok(tile), n),
        Err(e) => (Err(e), 0),
    };
    if origin_waits > 0 {
        app.metrics.origin_waits.observe(origin_waits as f64);
    }
    drop(renewal);
    match (&app.shared, token, &rendered) {
        (Some(shared), Some(token), Ok(tile)) => {
            shared.put_then_release(&key, tile, token);
            keep(app, key, tile.clone());
        }
        (Some(shared), Some(token), Err(_)) => shared.release(&key, token),
        (_, _, Ok(tile)) => keep(app, key, tile.clone()),
        (_, _, Err(_)) => {}
    }
    rendered.map(|tile| (tile, if origin_waits > 0 { Tier::Origin } else { Tier::Render }))
}

/// Step 1: the tile from the persistent tiers, if one holds it: the disk
/// tier, then the shared one (a shared hit is kept on disk too).
async fn from_tier(app: &App, key: &TileKey) -> Option<(Arc<Encoded>, Tier)> {
    if let Some(tier) = &app.tier {
        if let Some(tile) = tier.get(key).await {
            return Some((Arc::new(tile), Tier::Disk));
        }
    }
    let tile = Arc::new(app.shared.as_ref()?.get(key).await?);
    if let Some(tier) = &app.tier {
        tier.put(key, &tile);
    }
    Some((tile, Tier::Shared))
}

/// Step 1b, with a shared tier: the right to render `key` for every
/// instance (Ok with the lease's token), or the tile another instance
/// rendered while this one waited (Err). Ok(None): render here without a
/// lease (no shared tier, Redis unavailable, or the other instance's
/// render did not arrive in time).
async fn lease(app: &App, key: &TileKey) -> std::result::Result<Option<String>, Arc<Encoded>> {
    use crate::cache::shared::Lease;
    let Some(shared) = &app.shared else { return Ok(None) };
    match shared.lease(key).await {
        Lease::Held(token) => Ok(Some(token)),
        Lease::Unknown => Ok(None),
        Lease::Taken => match shared.wait_for(key).await {
            Some(tile) => Err(Arc::new(tile)),
            None => Ok(None),
        },
    }
}

/// Step 2: the decoded units behind the plan, when the decoded-unit store
/// applies to it (a JPEG 2000, a large JPEG); `None` when it does not, and
/// the render decodes directly.
async fn units(app: &Arc<App>, v: ApiVersion, key: &TileKey, p: &Prepared) -> Result<Option<Cut>> {
    let Some(store) = &app.decoded else { return Ok(None) };
    let (info, plan, version) = (&p.info, &p.plan, p.located.version);
    let max_pixels = app.settings.max_decode_pixels;
    let Some(tile_plan) = store.plan(info, &key.file, version, plan.region, plan.scale, max_pixels) else {
        return Ok(None);
    };
    let t = Instant::now();
    let waited_on_origin = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let input = DecodeInput {
        waited_on_origin: waited_on_origin.clone(),
        data: p.source.clone(),
        info: info.clone(),
        max_pixels,
        decodes: app.metrics.decodes.clone(),
        ahead: app.metrics.decodes_ahead.clone(),
        on_decoded: app.cfg.cache.eager_tiles.then(|| {
            // The advertised grid, and the one this viewer walks.
            let t = info::tiling(&info.shape(), app.cfg.output.tile_sizes(), &app.limits);
            let mut grids = vec![(t.tile_w, t.tile_h)];
            if let Some(g) = crate::eager::walked_grid(plan).filter(|g| !grids.contains(g)) {
                grids.push(g);
            }
            let ctx = crate::eager::Context {
                version: v,
                file: key.file.clone(),
                source_version: version,
                info: info.clone(),
                grids,
                limits: app.limits,
                max_pixels,
                store: store.clone(),
                asked: key.canonical.clone(),
            };
            crate::eager::hook(app.clone(), ctx)
        }),
    };
    let tiles = store.get_or_decode(&app.pool, &input, &tile_plan).await.map_err(|e| match e {
        GetOrDecodeError::Busy => Error::overloaded(app.cfg.server.retry_after),
        GetOrDecodeError::Codec(e) => render::codec_error(e),
    })?;
    let origin_waits = waited_on_origin.load(std::sync::atomic::Ordering::Relaxed);
    Ok(Some(Cut { plan: tile_plan, tiles, waited: t.elapsed(), origin_waits }))
}

/// Step 3: the render job on the pool, awaited here; with the reads of
/// its pixels that waited on a remote master's origin.
async fn render_on_pool(app: &Arc<App>, p: Prepared, cut: Option<Cut>, wanted: Wanted) -> Result<(Arc<Encoded>, u64)> {
    let a = app.clone();
    let queued = Instant::now();
    let short = cut.is_some();
    let job = move || {
        a.metrics.observe(Stage::Queue, queued.elapsed());
        // Every client waiting for this tile hung up while it was queued:
        // nobody would receive it, so skip it.
        if !wanted.is_wanted() {
            a.metrics.jobs_abandoned.inc();
            return Err(Error::abandoned());
        }
        let input = match &cut {
            Some(cut) => Input::Cut(cut),
            None => Input::Decode { data: p.source.as_ref(), info: &p.info },
        };
        let before = crate::source::ranged::waits_on_this_thread();
        let r = render::render(input, &p.plan, &a.settings, &a.metrics, &a.backend);
        if r.is_err() {
            a.forget_if_changed(&p.located, &p.source);
        }
        let waits = cut.as_ref().map_or(0, |c| c.origin_waits) + crate::source::ranged::waits_on_this_thread() - before;
        r.map(|tile| (tile, waits))
    };
    // A cut from decoded pixels takes milliseconds: it goes ahead of queued
    // decodes rather than waiting out each of them.
    let rx = if short { app.pool.submit_short(job) } else { app.pool.submit(job) }
        .map_err(|_| Error::overloaded(app.cfg.server.retry_after))?;
    let (tile, origin) = rx.await.map_err(|_| Error::internal("render panicked"))??;
    Ok((Arc::new(tile), origin))
}

/// Step 4: the rendered tile into the disk tier and the memory cache (the
/// shared tier gets it from [`run`], before the lease is given back).
fn keep(app: &App, key: TileKey, tile: Arc<Encoded>) {
    if let Some(tier) = &app.tier {
        tier.put(&key, &tile);
    }
    app.tiles.insert(key, tile);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use http::HeaderMap;
    use std::time::Duration;

    /// An app over a folder holding one 600×400 JPEG, `p.jpg`, with its disk
    /// tier in a second folder.
    fn app(images: &std::path::Path, tiles: &std::path::Path) -> Arc<App> {
        let px = crate::samples::generate::photo_like(600, 400, 3);
        let jpg = crate::codec::encode::encode(&px, crate::model::Format::Jpg, 90).expect("encode");
        std::fs::write(images.join("p.jpg"), jpg).expect("write");
        let toml = format!("[cache]\ndisk_dir = {:?}\n", tiles.display().to_string());
        let mut cfg = Config::from_toml_over_defaults(&toml).expect("config");
        cfg.source.root = images.to_path_buf();
        cfg.transform.backend = "cpu".into();
        Arc::new(App::new(cfg).expect("app"))
    }

    async fn prepared(app: &Arc<App>) -> (TileKey, Prepared) {
        let req = crate::iiif::v2::parse("0,0,256,256", "128,", "0", "default.jpg").expect("parse");
        let p = app.prepare(ApiVersion::V2, "p.jpg", &req, &HeaderMap::new()).await.expect("prepare");
        (app.tile_key(ApiVersion::V2, &p), p)
    }

    #[tokio::test]
    async fn a_tile_the_tier_holds_is_served_with_no_decode_and_kept_in_memory() {
        let (images, tiles) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let app = app(images.path(), tiles.path());
        let (key, p) = prepared(&app).await;
        let stored = Arc::new(Encoded { body: bytes::Bytes::from_static(b"stored"), media_type: "image/jpeg" });
        app.tier.as_ref().expect("tier").put(&key, &stored);
        let deadline = Instant::now() + Duration::from_secs(5);
        while from_tier(&app, &key).await.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (got, tier) = run(&app, ApiVersion::V2, key.clone(), p, Wanted::waiting(1)).await.expect("run");
        assert_eq!(&got.body[..], b"stored");
        assert_eq!(tier, Tier::Disk);
        assert_eq!(app.metrics.decodes.get(), 0);
        assert!(app.tiles.contains(&key));
    }

    #[tokio::test]
    async fn a_rendered_tile_is_kept_in_memory_and_in_the_tier() {
        let (images, tiles) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let app = app(images.path(), tiles.path());
        let (key, p) = prepared(&app).await;
        let (got, tier) = run(&app, ApiVersion::V2, key.clone(), p, Wanted::waiting(1)).await.expect("run");
        assert_eq!(tier, Tier::Render);
        assert_eq!(app.metrics.decodes.get(), 1);
        assert!(app.tiles.contains(&key));
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut on_disk = None;
        while on_disk.is_none() && Instant::now() < deadline {
            on_disk = from_tier(&app, &key).await.map(|(tile, _)| tile);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(on_disk.expect("in the tier").body, got.body);
    }

    #[tokio::test]
    async fn a_render_whose_every_client_has_gone_is_skipped_and_nothing_is_kept() {
        let (images, tiles) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let app = app(images.path(), tiles.path());
        let (key, p) = prepared(&app).await;
        let r = run(&app, ApiVersion::V2, key.clone(), p, Wanted::waiting(0)).await;
        assert!(r.is_err());
        assert_eq!(app.metrics.jobs_abandoned.get(), 1);
        assert_eq!(app.metrics.decodes.get(), 0);
        assert!(!app.tiles.contains(&key));
    }
}
