//! Configuration: the documented defaults in `config/default.toml` (compiled
//! in), an optional file laid over them, then `TESSERA_<SECTION>__<KEY>`
//! environment variables; typed, then validated. Errors name the key.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

use crate::plan::Limits;

/// The default configuration, documented key by key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// The default image root (where samples are generated).
pub const DEFAULT_ROOT: &str = "samples/generated";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    pub source: SourceCfg,
    /// Deserialised straight into the planner's own type.
    pub limits: Limits,
    pub output: Output,
    pub http: HttpCfg,
    pub cors: Cors,
    pub transform: TransformCfg,
    pub cache: CacheCfg,
    pub admin: Admin,
    pub presentation: crate::presentation::PresentationCfg,
    pub viewer: Viewer,
    pub deepzoom: DeepZoomCfg,
    pub zoomify: ZoomifyCfg,
    pub samples: Samples,
    pub log: Log,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub public_base_url: String,
    pub prefix_v2: String,
    pub prefix_v3: String,
    pub workers: usize,
    pub queue: usize,
    pub retry_after: u32,
    pub header_read_timeout: u64,
    pub keep_alive_timeout: u64,
    pub max_connections: usize,
    pub http2_keep_alive_interval: u64,
    pub http2_keep_alive_timeout: u64,
    pub http2_max_concurrent_streams: u32,
    pub trusted_proxies: Vec<String>,
    pub drain_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCfg {
    pub kind: SourceKind,
    pub root: PathBuf,
    pub lookup_prefix: String,
    pub lookup_suffix: String,
    pub mmap: bool,
    pub http: HttpSourceCfg,
    pub s3: S3SourceCfg,
}

/// `[source.s3]`: images in an S3 bucket (or an S3-compatible store), read
/// by range (see source::s3).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3SourceCfg {
    pub bucket: String,
    pub key_prefix: String,
    pub key_suffix: String,
    pub endpoint: String,
    pub region: String,
    pub path_style: bool,
    pub allow_http: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub cache_dir: PathBuf,
    pub cache_max_bytes: u64,
    pub max_source_bytes: u64,
    pub revalidate_after: u64,
    pub connect_timeout: u64,
    pub timeout: u64,
    pub retries: u32,
    pub range_block_bytes: u64,
    pub range_read_ahead_bytes: u64,
    /// Bytes of blocks kept in memory when the folder refuses them.
    pub range_memory_max_bytes: u64,
    pub range_tiff_tail_bytes: u64,
    pub keep_alive: bool,
}

/// Where images come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Filesystem,
    Http,
    S3,
}

/// `[source.http]`: images fetched from a web store (a DSpace bitstream
/// endpoint, say), kept in a bounded folder and memory-mapped from there.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceCfg {
    pub url_prefix: String,
    pub url_suffix: String,
    pub cache_dir: PathBuf,
    pub cache_max_bytes: u64,
    pub max_source_bytes: u64,
    pub revalidate_after: u64,
    pub auth_ttl: u64,
    pub connect_timeout: u64,
    pub read_timeout: u64,
    pub timeout: u64,
    pub retries: u32,
    pub retry_backoff_ms: u64,
    pub forward_authorization: bool,
    pub forward_cookies: Vec<String>,
    pub allow_insecure_tls: bool,
    pub max_concurrent_fetches: usize,
    pub follow_redirects_to_other_hosts: bool,
    /// Read public JPEG 2000 and TIFF images by range (see source::ranged).
    pub range_reads: bool,
    pub range_block_bytes: u64,
    pub range_read_ahead_bytes: u64,
    /// Bytes of blocks kept in memory when the folder refuses them.
    pub range_memory_max_bytes: u64,
    pub range_tiff_tail_bytes: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub jpeg_quality: u8,
    /// WebP: lossless (exact pixels, larger) instead of lossy at `jpeg_quality`.
    #[serde(default)]
    pub webp_lossless: bool,
    pub tile_size: u32,
    /// The largest side advertised for a tiled JPEG 2000's codestream tiles
    /// (halved until they fit).
    pub native_tile_max: u32,
}

impl Output {
    /// The tile sizes info.json advertises.
    pub fn tile_sizes(&self) -> crate::iiif::info::TileSizes {
        crate::iiif::info::TileSizes { default: self.tile_size, native_max: self.native_tile_max }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCfg {
    pub image_max_age: u64,
    pub info_max_age: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    pub allowed_origins: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformCfg {
    pub backend: String,
    pub gpu_min_pixels: crate::transform::MinPixels,
    pub gpu_resident_bytes: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheCfg {
    pub max_bytes: u64,
    pub decoded_max_bytes: u64,
    pub decoded_jpeg_min_pixels: u64,
    pub decoded_ahead: u32,
    pub decoded_unit: u32,
    pub eager_tiles: bool,
    pub disk_dir: PathBuf,
    pub disk_max_bytes: u64,
    /// `[cache.shared]`: the tier shared by several instances (Redis).
    pub shared: SharedCfg,
}

impl CacheCfg {
    /// The disk tier's folder: `disk_dir`, or when that is empty
    /// `$XDG_CACHE_HOME/tessera/tiles`, `$HOME/.cache/tessera/tiles`, or
    /// `tessera-tiles` under the system temp folder.
    pub fn disk_folder(&self) -> PathBuf {
        if !self.disk_dir.as_os_str().is_empty() {
            return self.disk_dir.clone();
        }
        let nonempty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty()).map(PathBuf::from);
        if let Some(x) = nonempty("XDG_CACHE_HOME") {
            return x.join("tessera").join("tiles");
        }
        if let Some(h) = nonempty("HOME") {
            return h.join(".cache").join("tessera").join("tiles");
        }
        std::env::temp_dir().join("tessera-tiles")
    }
}

/// `[cache.shared]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedCfg {
    /// "" (off) or "redis".
    pub kind: String,
    /// `redis://[user:password@]host:port[/db]` (or `rediss://`, `unix://`).
    pub url: String,
    /// Prefix of every key and channel, so several deployments can share a server.
    pub namespace: String,
    /// Time to live of a tile in Redis, in seconds.
    pub ttl_secs: u64,
    /// Deadline of one Redis call, in milliseconds.
    pub timeout_ms: u64,
    /// Time to live of a render or decode lease, in milliseconds; renewed
    /// by its holder while it works, so it bounds how long a crashed
    /// holder keeps the others waiting.
    pub lease_ms: u64,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the open breaker skips Redis, in milliseconds.
    pub breaker_cooldown_ms: u64,
}

impl SharedCfg {
    /// Whether a shared tier is configured.
    pub fn enabled(&self) -> bool {
        !self.kind.is_empty()
    }

    /// Checks every key; the error names it (`cache.shared.KEY`) and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match self.kind.as_str() {
            "" => return Ok(()),
            "redis" => {}
            _ => return Err(("kind", "must be \"\" (off) or \"redis\"".into())),
        }
        redis::Client::open(self.url.as_str()).map_err(|e| ("url", format!("not a Redis URL: {e}")))?;
        if self.namespace.is_empty() || self.namespace.contains(char::is_whitespace) {
            return Err(("namespace", "must be a non-empty word".into()));
        }
        for (key, v) in [
            ("ttl_secs", self.ttl_secs),
            ("timeout_ms", self.timeout_ms),
            ("lease_ms", self.lease_ms),
            ("breaker_cooldown_ms", self.breaker_cooldown_ms),
        ] {
            if v == 0 {
                return Err((key, "must be positive".into()));
            }
        }
        if self.breaker_failures == 0 {
            return Err(("breaker_failures", "must be positive".into()));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub enabled: bool,
    pub token: String,
    pub warm_max_tiles: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Viewer {
    pub mirador_url: String,
    pub static_dir: PathBuf,
    pub fallback_url: String,
}

/// `[deepzoom]`: Deep Zoom (DZI) descriptors and tiles (see zoom_protocols).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepZoomCfg {
    pub enabled: bool,
    /// TileSize; 0 = the tile size the image's info.json advertises.
    pub tile_size: u32,
    /// Overlap, in pixels of the level, on every inner edge of a tile.
    pub overlap: u32,
}

/// `[zoomify]`: Zoomify ImageProperties.xml and tiles (see zoom_protocols).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoomifyCfg {
    pub enabled: bool,
    /// TILESIZE.
    pub tile_size: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Samples {
    pub generate: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub level: String,
    /// "text" or "json", for every log line.
    #[serde(default = "text")]
    pub format: String,
    /// One line per request (the `access` target).
    #[serde(default = "yes")]
    pub access: bool,
    /// Where logs go: "" for standard output, else a file appended to.
    #[serde(default)]
    pub file: String,
}

fn text() -> String {
    "text".into()
}

fn yes() -> bool {
    true
}

/// One key of the effective configuration (see [`Config::explain`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explained {
    pub key: String,
    pub value: String,
    pub source: String,
}

fn flatten(fig: &Figment, prefix: &str, v: &figment::value::Value, out: &mut Vec<Explained>) {
    use figment::value::Value;
    if let Value::Dict(_, dict) = v {
        for (k, child) in dict {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            flatten(fig, &key, child, out);
        }
        return;
    }
    let value = toml::Value::try_from(v).map(|t| t.to_string()).unwrap_or_else(|_| format!("{v:?}"));
    let source = match fig.find_metadata(prefix) {
        Some(m) => match &m.source {
            Some(figment::Source::File(path)) => format!("file {}", path.display()),
            // The variable that set it, as `Config::layers` reads them.
            _ if m.name.contains("environment") => {
                format!("environment TESSERA_{}", prefix.replace('.', "__").to_uppercase())
            }
            _ => "default".to_string(),
        },
        None => "default".to_string(),
    };
    out.push(Explained { key: prefix.to_string(), value, source });
}

/// A configuration error; the message names the offending key.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

fn invalid(key: &str, why: &str) -> ConfigError {
    ConfigError(format!("invalid value for key `{key}`: {why}"))
}

impl Config {
    /// Defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_figment(Self::layers(file)?)
    }

    /// The layers [`Config::load`] merges, in order.
    fn layers(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut fig = Figment::new().merge(Toml::string(DEFAULT_TOML));
        if let Some(f) = file {
            if !f.is_file() {
                return Err(ConfigError(format!("config file {} not found", f.display())));
            }
            fig = fig.merge(Toml::file(f));
        }
        // Only SECTION__KEY variables are configuration; other TESSERA_* names
        // (used by tools and tests) are left alone.
        Ok(fig.merge(Env::prefixed("TESSERA_").filter(|k| k.as_str().contains("__")).split("__")))
    }

    /// Every key of the effective configuration (defaults, then `file`,
    /// then the environment) with its value as TOML writes it and where it
    /// came from (`default`, `file PATH`, `environment VARIABLE`), sorted by
    /// key; or the first error, naming its key. For `tessera check-config`.
    pub fn explain(file: Option<&Path>) -> Result<Vec<Explained>, ConfigError> {
        let fig = Self::layers(file)?;
        Self::from_figment(fig.clone())?;
        let root: figment::value::Value = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        let mut out = Vec::new();
        flatten(&fig, "", &root, &mut out);
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The compiled-in defaults only (for tests and tools).
    pub fn defaults() -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(DEFAULT_TOML)))
    }

    /// Defaults with a TOML snippet laid over them (for tests).
    pub fn from_toml_over_defaults(extra: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(DEFAULT_TOML)).merge(Toml::string(extra)))
    }

    fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        let cfg: Config = fig.extract().map_err(|e| {
            let key = e.path.join(".");
            let kind = e.kind.to_string();
            if key.is_empty() {
                ConfigError(kind)
            } else {
                ConfigError(format!("key `{key}`: {kind}"))
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.cache.shared.validate().map_err(|(key, why)| invalid(&format!("cache.shared.{key}"), &why))?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "must be \"text\" or \"json\""));
        }
        for (key, p) in [("server.prefix_v2", &self.server.prefix_v2), ("server.prefix_v3", &self.server.prefix_v3)] {
            if !p.starts_with('/') || p.ends_with('/') || p.len() < 2 || p.contains("//") {
                return Err(invalid(key, "must start with / and not end with / (e.g. \"/iiif/2\")"));
            }
        }
        // The grammar of web::trust::TrustedProxies::parse (an address or a
        // network), checked here without depending on the HTTP layer.
        for s in &self.server.trusted_proxies {
            let s = s.trim();
            if s.parse::<ipnet::IpNet>().is_err() && s.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid("server.trusted_proxies", &format!("{s:?} is not an IP address or network")));
            }
        }
        for (key, v) in [
            ("server.header_read_timeout", self.server.header_read_timeout),
            ("server.keep_alive_timeout", self.server.keep_alive_timeout),
            ("server.max_connections", self.server.max_connections as u64),
            ("server.http2_keep_alive_timeout", self.server.http2_keep_alive_timeout),
            ("server.http2_max_concurrent_streams", self.server.http2_max_concurrent_streams as u64),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.server.prefix_v2 == self.server.prefix_v3 {
            return Err(invalid("server.prefix_v3", "must differ from server.prefix_v2"));
        }
        let base = &self.server.public_base_url;
        if !(base.is_empty() || base.starts_with("http://") || base.starts_with("https://")) {
            return Err(invalid("server.public_base_url", "must be empty or start with http:// or https://"));
        }
        if !["auto", "gpu", "cpu"].contains(&self.transform.backend.as_str()) {
            return Err(invalid("transform.backend", "must be \"auto\", \"gpu\" or \"cpu\""));
        }
        if self.server.queue == 0 {
            return Err(invalid("server.queue", "must be at least 1"));
        }
        if self.server.workers > 1024 {
            return Err(invalid("server.workers", "must be at most 1024 (0 = one per core)"));
        }
        if !(1..=100).contains(&self.output.jpeg_quality) {
            return Err(invalid("output.jpeg_quality", "must be between 1 and 100"));
        }
        if !(64..=4096).contains(&self.output.tile_size) {
            return Err(invalid("output.tile_size", "must be between 64 and 4096"));
        }
        if !(64..=4096).contains(&self.output.native_tile_max) {
            return Err(invalid("output.native_tile_max", "must be between 64 and 4096"));
        }
        let t = self.deepzoom.tile_size;
        if t != 0 && !(64..=4096).contains(&t) {
            return Err(invalid("deepzoom.tile_size", "must be 0 (as info.json advertises) or between 64 and 4096"));
        }
        if self.deepzoom.overlap > 32 {
            return Err(invalid("deepzoom.overlap", "must be at most 32"));
        }
        if !(64..=4096).contains(&self.zoomify.tile_size) {
            return Err(invalid("zoomify.tile_size", "must be between 64 and 4096"));
        }
        let l = &self.limits;
        if l.max_width == 0 || l.max_height == 0 || l.max_area == 0 {
            return Err(invalid("limits", "max_width, max_height and max_area must be positive"));
        }
        if !(l.max_upscale >= 1.0 && l.max_upscale.is_finite()) {
            return Err(invalid("limits.max_upscale", "must be a number of at least 1.0"));
        }
        if l.max_decode_pixels == 0 {
            return Err(invalid("limits.max_decode_pixels", "must be positive"));
        }
        if l.max_output_bytes < crate::plan::UNCOMPRESSED_BYTES_PER_PIXEL {
            return Err(invalid("limits.max_output_bytes", "must be at least 4 (one RGBA pixel)"));
        }
        if l.max_gif_pixels == 0 {
            return Err(invalid("limits.max_gif_pixels", "must be positive"));
        }
        if self.cors.allowed_origins.is_empty() {
            return Err(invalid("cors.allowed_origins", "must be [\"*\"] or a list of origins"));
        }
        for o in &self.cors.allowed_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(invalid(
                    "cors.allowed_origins",
                    "each entry must be \"*\" or an origin such as https://example.org",
                ));
            }
        }
        if self.cors.allow_credentials && self.cors.allowed_origins.iter().any(|o| o == "*") {
            return Err(invalid("cors.allow_credentials", "cannot be true when allowed_origins is \"*\""));
        }
        self.presentation.validate().map_err(|e| ConfigError(e.to_string()))?;
        if self.admin.enabled && self.admin.token.len() < 16 {
            return Err(invalid("admin.token", "must be set (at least 16 characters) when admin.enabled is true"));
        }
        if self.source.lookup_prefix.contains("..") || self.source.lookup_suffix.contains("..") {
            return Err(invalid("source.lookup_prefix", "may not contain .."));
        }
        if self.source.kind == SourceKind::Http {
            let h = &self.source.http;
            let p = &h.url_prefix;
            if !(p.starts_with("http://") || p.starts_with("https://")) || reqwest::Url::parse(p).is_err() {
                return Err(invalid(
                    "source.http.url_prefix",
                    "must be an http:// or https:// URL when source.kind is \"http\"",
                ));
            }
            if h.cache_max_bytes == 0 || h.max_source_bytes == 0 {
                return Err(invalid("source.http", "cache_max_bytes and max_source_bytes must be positive"));
            }
            if h.max_source_bytes > h.cache_max_bytes {
                return Err(invalid("source.http.max_source_bytes", "must not exceed source.http.cache_max_bytes"));
            }
            if h.connect_timeout == 0 || h.read_timeout == 0 || h.timeout == 0 {
                return Err(invalid("source.http", "connect_timeout, read_timeout and timeout must be positive"));
            }
            if h.retries > 10 {
                return Err(invalid("source.http.retries", "must be at most 10"));
            }
        }
        Ok(())
    }

    /// The socket address to bind.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        let ip: IpAddr = self
            .server
            .host
            .parse()
            .map_err(|_| invalid("server.host", "must be an IP address such as 0.0.0.0 or 127.0.0.1"))?;
        Ok(SocketAddr::new(ip, self.server.port))
    }

    /// Worker threads to start.
    pub fn worker_count(&self) -> usize {
        if self.server.workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        } else {
            self.server.workers
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // figment's own `Jail` API returns its large error type.
    #[allow(clippy::result_large_err)]
    fn explain_names_where_each_value_came_from_and_the_first_bad_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "[output]\njpeg_quality = 70\n")?;
            jail.set_env("TESSERA_SERVER__PORT", "9999");
            let all = Config::explain(Some(Path::new("t.toml"))).expect("valid");
            let find = |k: &str| all.iter().find(|e| e.key == k).cloned().expect(k);
            assert_eq!(find("output.jpeg_quality").value, "70");
            assert!(
                find("output.jpeg_quality").source.starts_with("file ")
                    && find("output.jpeg_quality").source.ends_with("t.toml")
            );
            assert_eq!(find("server.port").value, "9999");
            assert!(find("server.port").source.contains("TESSERA_SERVER__PORT"), "{:?}", find("server.port"));
            assert_eq!(find("output.tile_size").source, "default");
            assert!(all.windows(2).all(|w| w[0].key < w[1].key), "sorted");
            jail.create_file("bad.toml", "[output]\njpeg_quality = 0\n")?;
            let e = Config::explain(Some(Path::new("bad.toml"))).unwrap_err();
            assert!(e.to_string().contains("output.jpeg_quality"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_shipped_defaults_load_and_validate() {
        let c = Config::defaults().unwrap();
        assert_eq!(c.server.port, 8182);
        assert_eq!(c.server.prefix_v2, "/iiif/2");
        assert_eq!(c.cors.allowed_origins, vec!["*"]);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let e = Config::from_toml_over_defaults("[server]\nport = \"eighty\"").unwrap_err();
        assert!(e.to_string().contains("server.port"), "{e}");
        let e = Config::from_toml_over_defaults("[output]\njpeg_quality = 0").unwrap_err();
        assert!(e.to_string().contains("output.jpeg_quality"), "{e}");
        let e = Config::from_toml_over_defaults("[server]\nprefix_v2 = \"iiif\"").unwrap_err();
        assert!(e.to_string().contains("server.prefix_v2"), "{e}");
    }

    #[test]
    // figment's own `Jail` API returns its large error type.
    #[allow(clippy::result_large_err)]
    fn zoom_protocols_are_on_share_iiif_tiles_by_default_and_checked_by_key() {
        let c = Config::defaults().unwrap();
        assert!(c.deepzoom.enabled && c.zoomify.enabled);
        assert_eq!((c.deepzoom.tile_size, c.deepzoom.overlap, c.zoomify.tile_size), (0, 0, 256));
        for (toml, key) in [
            ("[deepzoom]\ntile_size = 32", "deepzoom.tile_size"),
            ("[deepzoom]\noverlap = 33", "deepzoom.overlap"),
            ("[zoomify]\ntile_size = 0", "zoomify.tile_size"),
        ] {
            let e = Config::from_toml_over_defaults(toml).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
        figment::Jail::expect_with(|jail| {
            jail.set_env("TESSERA_DEEPZOOM__OVERLAP", "1");
            jail.set_env("TESSERA_ZOOMIFY__ENABLED", "false");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!((c.deepzoom.overlap, c.zoomify.enabled), (1, false));
            Ok(())
        });
    }

    #[test]
    // figment's own `Jail` API returns its large error type.
    #[allow(clippy::result_large_err)]
    fn presentation_default_version_is_2_1_1_takes_3_0_and_a_bad_one_names_its_key() {
        let c = Config::defaults().unwrap();
        assert_eq!(c.presentation.default_version, crate::presentation::VERSION_2);
        let c = Config::from_toml_over_defaults("[presentation]\ndefault_version = \"3.0\"").unwrap();
        assert!(c.presentation.defaults_to_v3());
        for bad in ["\"3\"", "\"2.1\"", "\"latest\"", "3.5"] {
            let e = Config::from_toml_over_defaults(&format!("[presentation]\ndefault_version = {bad}")).unwrap_err();
            assert!(e.to_string().contains("presentation.default_version"), "{bad}: {e}");
        }
        figment::Jail::expect_with(|jail| {
            // The environment gives a number here.
            jail.set_env("TESSERA_PRESENTATION__DEFAULT_VERSION", "3.0");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert!(c.presentation.defaults_to_v3());
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let e = Config::from_toml_over_defaults("[server]\nprot = 1").unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
    }

    #[test]
    // figment's own `Jail` API returns its large error type.
    #[allow(clippy::result_large_err)]
    fn environment_variables_override_keys() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TESSERA_SERVER__PORT", "9999");
            jail.set_env("TESSERA_CORS__ALLOWED_ORIGINS", "[\"https://a.example\"]");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.server.port, 9999);
            assert_eq!(c.cors.allowed_origins, vec!["https://a.example"]);
            Ok(())
        });
    }

    #[test]
    // figment's own `Jail` API returns its large error type.
    #[allow(clippy::result_large_err)]
    fn the_gpu_crossover_is_measured_by_default_or_fixed_by_a_number() {
        use crate::transform::MinPixels;
        let c = Config::from_toml_over_defaults("").unwrap();
        assert_eq!((c.transform.backend.as_str(), c.transform.gpu_min_pixels), ("auto", MinPixels::Measure));
        let c = Config::from_toml_over_defaults("[transform]\ngpu_min_pixels = 0").unwrap();
        assert_eq!(c.transform.gpu_min_pixels, MinPixels::Pixels(0));
        let e = Config::from_toml_over_defaults("[transform]\ngpu_min_pixels = \"fast\"").unwrap_err();
        assert!(e.to_string().contains("gpu_min_pixels"), "{e}");
        figment::Jail::expect_with(|jail| {
            jail.set_env("TESSERA_TRANSFORM__GPU_MIN_PIXELS", "4096");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.transform.gpu_min_pixels, MinPixels::Pixels(4096));
            jail.set_env("TESSERA_TRANSFORM__GPU_MIN_PIXELS", "measure");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.transform.gpu_min_pixels, MinPixels::Measure);
            Ok(())
        });
    }

    #[test]
    fn credentials_with_a_wildcard_origin_are_refused() {
        let e = Config::from_toml_over_defaults("[cors]\nallow_credentials = true").unwrap_err();
        assert!(e.to_string().contains("cors.allow_credentials"), "{e}");
    }
}
