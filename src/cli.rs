//! The command line: `tessera serve` (the default), `tessera info FILE`,
//! `tessera check-config FILE` and `tessera loadtest URL...` (see
//! [`crate::loadtest`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_ROOT};
use crate::iiif::{info, ApiVersion};
use crate::service::App;

#[derive(Parser, Debug)]
#[command(name = "tessera", version, about = "A fast IIIF Image API server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Configuration file laid over the built-in defaults (config/default.toml documents every key).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Address and port to listen on, e.g. 127.0.0.1:8182 (overrides server.host and server.port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Folder of images to serve (overrides source.root); each file is served
    /// under its name with and without its extension.
    #[arg(long)]
    pub images: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Print the info.json the server would give for FILE.
    Info {
        file: PathBuf,
        /// Image API version of the document: 2 or 3.
        #[arg(long, default_value_t = 2)]
        api: u8,
    },
    /// Print the effective configuration of FILE laid over the defaults and
    /// the environment, each key with where its value came from; or the
    /// first error, naming its key (exit status 1).
    CheckConfig {
        file: PathBuf,
    },
    // No doc comment here: the module's own about and long help apply.
    Loadtest(crate::loadtest::Options),
}

/// Runs the CLI; returns the process exit code.
pub fn run() -> i32 {
    quiet_vulkan_device_select();
    // Also while the process has one thread: it changes the environment.
    if let Err(e) = crate::socket_activation::take_from_environment() {
        eprintln!("tessera: {e}");
        return 2;
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Info { file, api }) => info_command(&file, api, cli.serve.config.as_deref()),
        Some(Command::Serve(args)) => serve_command(merge(cli.serve, args)),
        Some(Command::Loadtest(o)) => crate::loadtest::run(o),
        Some(Command::CheckConfig { file }) => check_config_command(&file),
        None => serve_command(cli.serve),
    }
}

/// Mesa's Vulkan device-select layer, loaded with any Mesa driver when the
/// GPU is probed, asks the desktop's compositor which GPU it uses; without a
/// desktop (a server) it prints `error: XDG_RUNTIME_DIR is invalid or not
/// set in the environment.` twice to standard error, a line in no log
/// format and not an error. The layer only orders adapters for desktop
/// applications; Tessera enumerates and chooses adapters itself, so it is
/// switched off (`NODEVICE_SELECT=1`) unless the environment already says.
/// Called first thing, while the process has one thread (the environment
/// is not safe to change once others may read it).
fn quiet_vulkan_device_select() {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

fn check_config_command(file: &std::path::Path) -> i32 {
    match Config::explain(Some(file)) {
        Ok(keys) => {
            let width = keys.iter().map(|e| e.key.len() + e.value.len() + 3).max().unwrap_or(0).min(72);
            for e in keys {
                let line = format!("{} = {}", e.key, e.value);
                println!("{line:<width$}  # {}", e.source);
            }
            eprintln!("{}: valid", file.display());
            0
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            1
        }
    }
}

fn merge(global: ServeArgs, sub: ServeArgs) -> ServeArgs {
    ServeArgs {
        config: sub.config.or(global.config),
        listen: sub.listen.or(global.listen),
        images: sub.images.or(global.images),
    }
}

fn load_config(args: &ServeArgs) -> Result<Config, String> {
    let mut cfg = Config::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(addr) = args.listen {
        cfg.server.host = addr.ip().to_string();
        cfg.server.port = addr.port();
    }
    if let Some(dir) = &args.images {
        // The catalogue follows the images unless it was configured: the
        // default one lies under the default image root.
        let default_catalogue =
            std::path::Path::new(DEFAULT_ROOT).join(crate::presentation::catalogue::CONVENTIONAL_FOLDER);
        if cfg.presentation.catalogue_root == default_catalogue {
            cfg.presentation.catalogue_root = dir.join(crate::presentation::catalogue::CONVENTIONAL_FOLDER);
        }
        cfg.source.root = dir.clone();
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn serve_command(args: ServeArgs) -> i32 {
    let cfg = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tessera: {e}");
            return 2;
        }
    };
    let _log_guard = match crate::logging::init(&cfg.log) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("tessera: {e}");
            return 2;
        }
    };
    if cfg.samples.generate && cfg.source.root == std::path::Path::new(DEFAULT_ROOT) {
        let t = std::time::Instant::now();
        match crate::samples::ensure(&cfg.source.root) {
            Ok(w) if !w.is_empty() => {
                tracing::info!(files = ?w, ms = t.elapsed().as_millis() as u64, "generated sample images")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not generate the sample images"),
        }
        // The large JPEG 2000 takes longer: make it in the background; it is
        // served as soon as it is written (atomically).
        let root = cfg.source.root.clone();
        let _ = std::thread::Builder::new().name("tessera-samples".into()).spawn(move || {
            let t = std::time::Instant::now();
            match crate::samples::ensure_large(&root) {
                Ok(true) => tracing::info!(
                    secs = t.elapsed().as_secs(),
                    "generated the large JPEG 2000 sample ({})",
                    crate::samples::LARGE_JP2
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "could not generate the large JPEG 2000 sample"),
            }
        });
    }
    if !cfg.source.root.is_dir() {
        eprintln!("tessera: image folder {} does not exist (source.root / --images)", cfg.source.root.display());
        return 2;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tessera: cannot start the runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let addr = match cfg.listen_addr() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("tessera: {e}");
                return 2;
            }
        };
        let open_files = crate::server::raise_open_files_limit();
        if let Some(n) = open_files {
            if (n as usize) < cfg.server.max_connections.saturating_add(256) {
                tracing::warn!(
                    open_files = n,
                    max_connections = cfg.server.max_connections,
                    "the open-files limit is below server.max_connections plus headroom; raise LimitNOFILE or lower the cap"
                );
            }
        }
        let listener = match crate::socket_activation::listener() {
            // Handed over by the parent (systemd's socket unit): it keeps
            // the socket across restarts, so none refuses a connection.
            Some((l, ignored)) => {
                if ignored > 0 {
                    tracing::warn!(ignored, "socket activation: only the first socket handed over is served");
                }
                match l.set_nonblocking(true).and_then(|()| tokio::net::TcpListener::from_std(l)) {
                    Ok(l) => {
                        tracing::info!("listening on the socket handed over (socket activation); server.host and port are not used");
                        l
                    }
                    Err(e) => {
                        eprintln!("tessera: the socket handed over cannot be used: {e}");
                        return 1;
                    }
                }
            }
            None => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("tessera: cannot listen on {addr}: {e}");
                    return 1;
                }
            },
        };
        let bound = listener.local_addr().unwrap_or(addr);
        let prefix = cfg.server.prefix_v2.clone();
        let root = cfg.source.root.display().to_string();
        let app = match App::new(cfg) {
            Ok(a) => Arc::new(a),
            Err(e) => {
                eprintln!("tessera: {e}");
                return 1;
            }
        };
        tracing::info!(%bound, images = %root, workers = app.pool.workers(), "Tessera listening: http://{bound}{prefix}/{{identifier}}/info.json");
        crate::manifests::prepare_catalogue_in_background(&app);
        crate::state::listen_for_shared_purges(&app);
        #[cfg(unix)]
        reload_on_sighup(&app);
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        };
        #[cfg(unix)]
        let shutdown = async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return shutdown.await,
            };
            tokio::select! { _ = shutdown => {}, _ = term.recv() => tracing::info!("SIGTERM: shutting down") }
        };
        match crate::server::serve(app, listener, shutdown).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("tessera: {e}");
                1
            }
        }
    })
}

/// SIGHUP reloads the item catalogue (as `POST /admin/reload` does), the
/// way `systemctl reload` asks.
#[cfg(unix)]
fn reload_on_sighup(app: &Arc<App>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "SIGHUP will not reload the catalogue");
            return;
        }
    };
    let app = app.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let a = app.clone();
            match tokio::task::spawn_blocking(move || crate::manifests::reload_catalogue(&a)).await {
                Ok(Some(r)) => tracing::info!(items = r.items, problems = r.problems, "SIGHUP: catalogue reloaded"),
                Ok(None) => tracing::info!("SIGHUP: presentation is off; nothing to reload"),
                Err(e) => tracing::warn!(error = %e, "SIGHUP: reload failed"),
            }
        }
    });
}

fn info_command(file: &std::path::Path, api: u8, config: Option<&std::path::Path>) -> i32 {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tessera: {e}");
            return 2;
        }
    };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tessera: cannot read {}: {e}", file.display());
            return 1;
        }
    };
    let image = match crate::codec::probe(&bytes) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("tessera: {}: {e}", file.display());
            return 1;
        }
    };
    let (v, prefix) =
        if api == 3 { (ApiVersion::V3, &cfg.server.prefix_v3) } else { (ApiVersion::V2, &cfg.server.prefix_v2) };
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let base = if cfg.server.public_base_url.is_empty() {
        format!("http://localhost:{}", cfg.server.port)
    } else {
        cfg.server.public_base_url.trim_end_matches('/').to_string()
    };
    let id =
        format!("{base}{prefix}/{}", percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC));
    let limits = cfg.limits();
    let t = info::tiling(&image.shape(), cfg.output.tile_sizes(), &limits);
    let doc = info::build(v, &id, &image.shape(), &t, &limits);
    match serde_json::to_string_pretty(&doc) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => {
            eprintln!("tessera: {e}");
            1
        }
    }
}
