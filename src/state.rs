//! The state every request shares ([`App`]): configuration, sources, the
//! worker pool, every cache (tiles, headers, opened files, the hot path,
//! decoded units, the disk tier) and metrics; how it is built from the
//! configuration, and how the caches are purged together. The handlers that
//! use it live with their resource (`service` for the Image API, `pages`,
//! `manifests`, `admin`).

use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderMap, HeaderValue};
use http::{Method, Uri};

use crate::cache::{Encoded, InfoCache, SingleFlight, TileCache, TileKey};
use crate::config::Config;
use crate::error::Result;
use crate::metrics::{Metrics, Stage};
use crate::plan::{self, Limits};
use crate::pool::Pool;
use crate::render::{self, RenderSettings};
use crate::source::{Located, Source, SourceVersion, Sources};
use crate::web::cors::CorsPolicy;

/// One render per tile key however many requests wait: the tile and the
/// tier that answered it.
pub type TileFlights = SingleFlight<TileKey, Result<(Arc<Encoded>, crate::cache::Tier)>>;

/// The state shared by every request.
pub struct App {
    pub cfg: Config,
    /// Where images come from (files, or an HTTP origin).
    pub sources: Sources,
    pub limits: Limits,
    pub cors: CorsPolicy,
    pub pool: Pool,
    pub tiles: TileCache,
    pub infos: InfoCache,
    /// Opened (memory-mapped) sources by file and version.
    pub opened: quick_cache::sync::Cache<(std::path::PathBuf, SourceVersion), Arc<Source>>,
    pub flights: Arc<TileFlights>,
    pub metrics: Arc<Metrics>,
    pub settings: RenderSettings,
    pub warm: crate::warm::WarmJobs,
    /// The item catalogue in service, with its search indexes (when
    /// presentation is enabled); reloadable.
    pub catalogue: Option<crate::presentation::live::LiveCatalogue>,
    /// Decoded JPEG 2000 codestream tiles (None when disabled).
    pub decoded: Option<Arc<crate::decoded::DecodedTiles>>,
    /// The persistent tile tier behind `tiles` (None when disabled, or when
    /// its folder could not be opened).
    pub tier: Option<Arc<dyn crate::cache::tier::TileTier>>,
    /// The tier shared with other instances (Redis), behind the disk tier
    /// (None unless `[cache.shared]` names one).
    pub shared: Option<Arc<crate::cache::shared::RedisTier>>,
    /// Request URL → [`HotEntry`] for cached tiles.
    pub hot: quick_cache::sync::Cache<String, Arc<HotEntry>, HotBytes>,
    /// The transform backend (CPU, or a GPU chosen at start).
    pub backend: crate::transform::Backend,
    /// Start of the monotonic clock hot entries are stamped with.
    pub(crate) clock: Instant,
    /// Set when shutdown begins with a drain (`server.drain_secs`): /health
    /// answers 503 so load balancers stop sending new work.
    pub draining: std::sync::atomic::AtomicBool,
}

/// What a repeated image request needs to be answered without parsing or
/// planning again: the located source (re-checked with one `lstat`, or the
/// HTTP source's freshness), the tile-cache key, and the response headers.
/// Restricted sources never get one.
pub struct HotEntry {
    pub(crate) located: Located,
    /// The opened source, while the `opened` cache (or a request) keeps it:
    /// then one `fstat` of its file checks it (see `Source::unchanged`).
    pub(crate) source: std::sync::Weak<Source>,
    /// When the path was last re-resolved (ms on `App::clock`).
    pub(crate) checked_ms: std::sync::atomic::AtomicU64,
    pub(crate) key: TileKey,
    pub(crate) etag: HeaderValue,
    /// Every header of the 200 answer (CORS too when the policy's headers
    /// do not depend on the request), cloned as a whole per answer.
    pub(crate) headers: HeaderMap,
}

/// How often a hot entry's path is re-checked with an `lstat` even while
/// its open file is unchanged (catches a renamed parent folder).
/// The byte bound of the hot-path map. Its keys hold client input (the path
/// and the Host and forwarded headers), so it is bounded in bytes, not only
/// in entries; a key longer than [`HOT_KEY_MAX`] is never kept.
pub const HOT_MAX_BYTES: u64 = 64 << 20;
/// The longest hot-path key kept.
pub const HOT_KEY_MAX: usize = 2048;

/// Weighs a hot-path entry by the bytes it holds.
#[derive(Clone)]
pub struct HotBytes;
impl quick_cache::Weighter<String, Arc<HotEntry>> for HotBytes {
    fn weight(&self, k: &String, v: &Arc<HotEntry>) -> u64 {
        let headers: usize = v.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum();
        (k.len() + headers + v.key.file.len() + v.key.canonical.len() + v.located.path.as_os_str().len() + 256) as u64
    }
}

/// Decoded units waiting to be tiled eagerly (background jobs; each holds
/// its unit's pixels, some 3 MB for a 1024² RGB unit). Past it a decoded unit
/// is not tiled ahead; its tiles render on demand.
pub const EAGER_MAX_UNITS: usize = 64;

pub const HOT_PATH_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The request head the service needs.
pub struct Head<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
}

impl App {
    pub fn new(cfg: Config) -> std::result::Result<App, String> {
        let sources = Sources::from_config(&cfg.source)?;
        let pool = Pool::with_background(cfg.worker_count(), cfg.server.queue, EAGER_MAX_UNITS)
            .map_err(|e| format!("starting workers: {e}"))?;
        let metrics = Arc::new(Metrics::new().map_err(|e| format!("metrics: {e}"))?);
        let catalogue = cfg.presentation.enabled.then(|| {
            crate::presentation::live::LiveCatalogue::load(&cfg.presentation.catalogue_root, &cfg.source.root)
        });
        let backend = crate::transform::Backend::choose(
            &cfg.transform.backend,
            cfg.transform.gpu_min_pixels,
            cfg.transform.gpu_resident_bytes,
        );
        metrics.gpu_backend.set((backend.name() == "gpu") as i64);
        let settings = RenderSettings {
            jpeg_quality: cfg.output.jpeg_quality,
            webp_lossless: cfg.output.webp_lossless,
            max_decode_pixels: cfg.limits.max_decode_pixels,
        };
        let tier = open_tier(&cfg, &settings);
        // Canvas checksums are kept beside the tiles, in the folder whose
        // lock this server now holds, so a restart does not read every image.
        let mut catalogue = catalogue;
        if let (Some(c), Some(_)) = (catalogue.as_mut(), &tier) {
            c.checksums = crate::presentation::live::Checksums::kept_in(cfg.cache.disk_folder().join(CHECKSUM_FILE));
        }
        let shared = if cfg.cache.shared.enabled() {
            Some(crate::cache::shared::RedisTier::new(&cfg.cache.shared, tile_fingerprint(&settings))?)
        } else {
            None
        };
        Ok(App {
            tier,
            shared: shared.clone(),
            limits: cfg.limits(),
            cors: CorsPolicy::from_config(&cfg.cors),
            tiles: TileCache::new(cfg.cache.max_bytes),
            infos: InfoCache::new(10_000),
            opened: quick_cache::sync::Cache::new(256),
            flights: Arc::new(SingleFlight::default()),
            settings,
            warm: Default::default(),
            catalogue,
            hot: quick_cache::sync::Cache::with_weighter(65_536, HOT_MAX_BYTES, HotBytes),
            backend,
            clock: Instant::now(),
            draining: Default::default(),
            decoded: (cfg.cache.decoded_max_bytes > 0).then(|| {
                Arc::new(
                    crate::decoded::DecodedTiles::new(cfg.cache.decoded_max_bytes)
                        .with_jpeg_min_pixels(cfg.cache.decoded_jpeg_min_pixels)
                        .with_ahead(cfg.cache.decoded_ahead)
                        .with_unit(cfg.cache.decoded_unit)
                        .with_shared(shared.clone()),
                )
            }),
            sources,
            pool,
            metrics,
            cfg,
        })
    }

    /// [`App::purge_all_here`], and the same on every instance sharing the
    /// Redis tier (its tiles dropped there too).
    pub fn purge_all(&self) -> usize {
        if let Some(s) = &self.shared {
            s.purge_all();
        }
        self.purge_all_here()
    }

    /// Drops every cached tile, header, opened file, hot-path entry, decoded
    /// unit and disk-tier tile (and an HTTP source's fetched copies) of this
    /// instance. Returns the number of encoded tiles dropped from memory.
    pub fn purge_all_here(&self) -> usize {
        let n = self.tiles.purge_all();
        self.infos.purge_all();
        self.opened.clear();
        self.hot.clear();
        if let Some(h) = self.sources.http() {
            h.purge_all();
        }
        if let Some(s) = self.sources.s3() {
            s.purge_all();
        }
        if let Some(d) = &self.decoded {
            d.purge_all();
        }
        if let Some(t) = &self.tier {
            t.purge_all();
        }
        n
    }

    /// [`App::purge_here`], and the same on every instance sharing the
    /// Redis tier (the image's tiles dropped there too).
    pub fn purge(&self, id: &str) -> usize {
        if let Some(s) = &self.shared {
            s.purge(&self.file_key(id), id);
        }
        self.purge_here(id)
    }

    /// Drops everything this instance caches of the image `id` names (all
    /// versions), in every cache; an HTTP source's fetched copy goes too, so
    /// the next request asks the origin. Returns the number of encoded tiles
    /// dropped from memory.
    pub fn purge_here(&self, id: &str) -> usize {
        let key = self.file_key(id);
        let n = self.tiles.purge(&key);
        self.infos.purge(&key);
        self.hot.clear();
        if let Some(h) = self.sources.http() {
            h.purge(id);
        }
        if let Some(s) = self.sources.s3() {
            s.purge(id);
        }
        if let Some(d) = &self.decoded {
            d.purge(&key);
        }
        if let Some(t) = &self.tier {
            t.purge(&key);
        }
        n
    }
}

/// Eager tiles go where rendered tiles go: the memory cache and the tier.
impl crate::eager::Sink for App {
    fn is_cached(&self, key: &TileKey) -> bool {
        self.tiles.contains(key)
    }

    fn encode(&self, pixels: crate::pixels::Pixels, plan: &plan::Plan) -> Option<Encoded> {
        render::finish_on(pixels, plan, &self.settings, &self.metrics, &self.backend).ok()
    }

    fn batches(&self) -> bool {
        matches!(self.backend, crate::transform::Backend::Gpu { .. })
    }

    fn transform_in(
        &self,
        unit: &Arc<crate::pixels::Pixels>,
        items: Vec<(crate::transform::gpu::Rect4, &plan::Plan)>,
    ) -> Option<Vec<crate::pixels::Pixels>> {
        render::transform_in(unit, items, &self.metrics, &self.backend)
    }

    fn encode_transformed(&self, pixels: &crate::pixels::Pixels, plan: &plan::Plan) -> Option<Encoded> {
        render::encode(pixels, plan, &self.settings, &self.metrics).ok()
    }

    fn keep(&self, key: TileKey, tile: Arc<Encoded>, took: std::time::Duration) {
        if let Some(tier) = &self.tier {
            tier.put(&key, &tile);
        }
        if let Some(shared) = &self.shared {
            shared.put(&key, &tile);
        }
        self.tiles.insert(key, tile);
        self.metrics.eager_tiles.inc();
        self.metrics.observe(Stage::Eager, took);
    }

    fn background(&self, job: Box<dyn FnOnce() + Send>) -> bool {
        self.pool.submit_background(job).is_ok()
    }
}

/// Everything besides the key that shapes a tile's bytes (tiers keep it
/// with each tile, so a tile from other settings or another build is a miss).
fn tile_fingerprint(settings: &RenderSettings) -> u64 {
    let webp = [settings.webp_lossless as u8];
    crate::source::fnv1a(&[env!("CARGO_PKG_VERSION").as_bytes(), &[settings.jpeg_quality], &webp])
}

/// Listens to the purges other instances sharing the Redis tier announce,
/// and purges here what they name. Call once, inside the runtime.
pub fn listen_for_shared_purges(app: &Arc<App>) {
    let Some(shared) = &app.shared else { return };
    let weak = Arc::downgrade(app);
    shared.listen(move |notice| {
        let Some(app) = weak.upgrade() else { return };
        match notice {
            crate::cache::shared::PurgeNotice::All => {
                let n = app.purge_all_here();
                tracing::info!(tiles = n, "purged all, as another instance asked");
            }
            crate::cache::shared::PurgeNotice::Image(id) => {
                let n = app.purge_here(&id);
                tracing::info!(identifier = %id, tiles = n, "purged, as another instance asked");
            }
        }
    });
}

/// The file in the disk tier's folder that keeps canvas checksums.
pub const CHECKSUM_FILE: &str = "checksums.jsonl";

/// Opens the persistent tile tier the configuration names; a folder that
/// cannot be opened (or is in use by another server) leaves the server
/// running without it, with a warning.
fn open_tier(cfg: &Config, settings: &RenderSettings) -> Option<Arc<dyn crate::cache::tier::TileTier>> {
    if cfg.cache.disk_max_bytes == 0 {
        return None;
    }
    let dir = cfg.cache.disk_folder();
    match crate::cache::tier::DiskTier::open(&dir, cfg.cache.disk_max_bytes, tile_fingerprint(settings)) {
        Ok(t) => {
            tracing::info!(folder = %dir.display(), max_bytes = cfg.cache.disk_max_bytes, "disk tile tier");
            Some(Arc::new(t))
        }
        Err(e) => {
            tracing::warn!(error = %e, "running without the disk tile tier");
            None
        }
    }
}
