//! The S3 source against a real S3-compatible store on loopback: Garage
//! (crates.io `garage`, run as an external program, never linked; installed
//! by scripts/deps.sh), one node, a bucket and a key made with its CLI.
//! Objects are written with object_store itself; Tessera runs in-process
//! over `source.kind = "s3"` and must answer exactly what the same files
//! served from disk answer, reading only the blocks a request needs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::StatusCode;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// A Garage node on loopback, stopped (by its id) when dropped.
struct Garage {
    child: Child,
    config: PathBuf,
    s3: String,
    key_id: String,
    secret: String,
    _dir: tempfile::TempDir,
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn garage_bin() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let candidates = [home.join(".cargo/bin/garage"), PathBuf::from("/usr/local/bin/garage")];
    candidates.into_iter().find(|p| p.is_file()).or_else(|| {
        Command::new("garage")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| PathBuf::from("garage"))
    })
}

impl Garage {
    fn cli(&self, bin: &Path, args: &[&str]) -> String {
        let out = Command::new(bin).arg("-c").arg(&self.config).args(args).output().unwrap();
        assert!(out.status.success(), "garage {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start(bucket: &str) -> Option<Garage> {
        let Some(bin) = garage_bin() else {
            skip_missing("garage", "cargo install garage --locked, as scripts/deps.sh test does");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let (rpc, s3) = (free_port(), free_port());
        let secret: String = (0..32).map(|i| format!("{:02x}", (i * 37 + 11) % 256)).collect();
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\nroot_domain = \".s3.garage.localhost\"\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut g = Garage {
            child,
            config,
            s3: format!("http://127.0.0.1:{s3}"),
            key_id: String::new(),
            secret: String::new(),
            _dir: dir,
        };
        // The node's id, once its RPC answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        let id = loop {
            let out = Command::new(&bin).arg("-c").arg(&g.config).arg("status").output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let id = text
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .find(|w| w.len() >= 16 && w.chars().all(|c| c.is_ascii_hexdigit()));
            if let (true, Some(id)) = (out.status.success(), id) {
                break id.to_string();
            }
            assert!(Instant::now() < deadline, "garage did not start: {text}");
            std::thread::sleep(Duration::from_millis(200));
        };
        g.cli(&bin, &["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        g.cli(&bin, &["layout", "apply", "--version", "1"]);
        g.cli(&bin, &["bucket", "create", bucket]);
        let key = g.cli(&bin, &["key", "create", "tessera-test"]);
        let field = |name: &str| {
            key.lines()
                .find(|l| l.trim_start().to_ascii_lowercase().starts_with(name))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {name} in: {key}"))
        };
        g.key_id = field("key id");
        g.secret = field("secret key");
        g.cli(&bin, &["bucket", "allow", "--read", "--write", bucket, "--key", "tessera-test"]);
        Some(g)
    }

    fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(&self.s3)
                .with_region("garage")
                .with_bucket_name(bucket)
                .with_access_key_id(&self.key_id)
                .with_secret_access_key(&self.secret)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .build()
                .unwrap(),
        )
    }

    fn toml(&self, bucket: &str, folder: &Path) -> String {
        format!(
            "[source]\nkind = \"s3\"\n[source.s3]\nbucket = \"{bucket}\"\nendpoint = \"{}\"\nregion = \"garage\"\n\
             allow_http = true\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\ncache_dir = \"{}\"\n\
             range_block_bytes = 16384\nrevalidate_after = 0\n",
            self.s3,
            self.key_id,
            self.secret,
            folder.display()
        )
    }
}

async fn put(store: &Arc<dyn ObjectStore>, key: &str, bytes: Vec<u8>) {
    store.put(&object_store::path::Path::from(key), PutPayload::from(Bytes::from(bytes))).await.unwrap();
}

async fn pixels(app: &Arc<tessera::service::App>, path: &str) -> tessera::pixels::Pixels {
    let r = get(app, path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}: {}", String::from_utf8_lossy(r.body()));
    decode_any(r.body())
}

fn metric(text: &str, name: &str) -> f64 {
    metric_value(text, name).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_in_an_s3_bucket_are_served_by_range_as_the_same_files_on_disk_are() {
    let Some(g) = Garage::start("masters") else { return };
    let store = g.store("masters");
    let files = tempfile::tempdir().unwrap();
    let jp2 = tiled_jp2(&picture(4096, 3072), 1024);
    let jpg = tessera::codec::encode::encode(&picture(800, 600), tessera::iiif::Format::Jpg, 90).unwrap();
    std::fs::write(files.path().join("t.jp2"), &jp2).unwrap();
    std::fs::write(files.path().join("p.jpg"), &jpg).unwrap();
    put(&store, "t.jp2", jp2.clone()).await;
    put(&store, "p.jpg", jpg).await;
    let folder = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let app = app(root.path(), &g.toml("masters", folder.path()));
    let local = common::app(files.path(), "");
    let compare = |path: &'static str| {
        let (app, local) = (app.clone(), local.clone());
        async move {
            let (a, b) = (pixels(&app, path).await, pixels(&local, path).await);
            assert_eq!(a.data(), b.data(), "{path}: the S3 answer differs from the file's");
        }
    };
    compare("/iiif/2/t.jp2/512,512,256,256/256,/0/default.png").await;
    compare("/iiif/2/t.jp2/full/1024,/0/default.png").await;
    let m = String::from_utf8(get(&app, "/metrics").await.into_body().to_vec()).unwrap();
    // The first block (16 KiB) comes with the open; the rest by range.
    let fetched = metric(&m, "tessera_s3_range_bytes_total") + 16384.0;
    assert_eq!(metric(&m, "tessera_s3_opens_total"), 1.0);
    assert!(fetched < (jp2.len() as f64) * 0.6, "a tile and a 1/4 view fetched {fetched} of {} bytes", jp2.len());
    // A JPEG has no random access: its blocks are all asked at once.
    compare("/iiif/2/p.jpg/full/200,/0/default.png").await;
    assert_eq!(get(&app, "/iiif/2/missing.jp2/info.json").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/iiif/2/..%2Ft.jp2/info.json").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_replaced_in_the_bucket_is_never_mixed_with_its_old_blocks() {
    let Some(g) = Garage::start("replaced") else { return };
    let store = g.store("replaced");
    let old = picture(2048, 1536);
    put(&store, "t.jp2", tiled_jp2(&old, 256)).await;
    let folder = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let app = app(root.path(), &g.toml("replaced", folder.path()));
    assert_eq!(get(&app, "/iiif/2/t.jp2/info.json").await.status(), StatusCode::OK);
    let data: Vec<u8> = old.data().iter().map(|v| 255 - v).collect();
    let new = tessera::pixels::Pixels::new(2048, 1536, old.layout(), data).unwrap();
    let new_jp2 = tiled_jp2(&new, 256);
    put(&store, "t.jp2", new_jp2.clone()).await;
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("t.jp2"), &new_jp2).unwrap();
    let local = common::app(files.path(), "");
    let path = "/iiif/2/t.jp2/1024,512,256,256/256,/0/default.png";
    // revalidate_after = 0: the request sees the new ETag and opens the new
    // version; whatever happens, never a tile of the old one.
    let r = get(&app, path).await;
    let want = pixels(&local, path).await;
    if r.status() == StatusCode::OK {
        assert_eq!(decode_any(r.body()).data(), want.data(), "a tile of the new object");
    } else {
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(pixels(&app, path).await.data(), want.data(), "the retry gets the new object");
    }
}
