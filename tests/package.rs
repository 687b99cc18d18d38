//! The Debian package as an operator gets it: `scripts/package.sh` builds it
//! around the binary under test, `dpkg -i` installs it on this machine, the
//! installed binary serves images with the installed configuration on
//! loopback (Mirador from the package included), the installed unit passes
//! `systemd-analyze verify`, and `dpkg --purge` takes it all away again.
//!
//! It changes the machine (as root), so it runs where `scripts/test.sh`
//! says so (`TESSERA_REQUIRE_PACKAGE=1`, set when it runs as root and has
//! installed cargo-deb); elsewhere it skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{http_get, image_dir, repo_path, skip_missing_unless_set};

const REQUIRED_BY: &str = "TESSERA_REQUIRE_PACKAGE";

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Purges the package when the test ends, however it ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "tessera"]).stdout(Stdio::null()).status();
    }
}

/// The installed `/usr/bin/tessera serve`, killed on drop.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn can_install() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip_missing_unless_set(REQUIRED_BY, "root (dpkg -i)", "run scripts/test.sh as root");
        return false;
    }
    if !repo_path("target/tools/cargo-deb/bin/cargo-deb").exists() {
        skip_missing_unless_set(REQUIRED_BY, "cargo-deb", "bash scripts/package.sh installs it");
        return false;
    }
    true
}

fn build_package(out_dir: &Path) -> PathBuf {
    let out = run(Command::new("bash")
        .arg(repo_path("scripts/package.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_tessera"), "--output"])
        .arg(out_dir));
    let deb = PathBuf::from(text(&out).lines().last().unwrap_or_default().trim());
    assert!(deb.is_file() && deb.starts_with(out_dir), "package.sh printed no .deb in {out_dir:?}: {}", text(&out));
    deb
}

#[test]
fn debian_package_installs_serves_with_its_configuration_and_purges() {
    if !can_install() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let deb = build_package(work.path());

    let fields = text(&run(Command::new("dpkg-deb").args(["--field"]).arg(&deb).args(["Package", "Version"])));
    assert!(fields.contains("Package: tessera"), "{fields}");
    assert!(fields.contains(&format!("Version: {}-1", env!("CARGO_PKG_VERSION"))), "{fields}");

    let _installed = Installed;
    run(Command::new("dpkg").arg("-i").arg(&deb).env("DEBIAN_FRONTEND", "noninteractive"));
    let conffiles = text(&run(Command::new("dpkg-query").args(["--showformat=${Conffiles}", "-W", "tessera"])));
    assert!(conffiles.contains("/etc/tessera/tessera.toml"), "not a conffile: {conffiles}");

    let version = text(&run(Command::new("/usr/bin/tessera").arg("--version")));
    assert_eq!(version.trim(), format!("tessera {}", env!("CARGO_PKG_VERSION")));

    // The installed configuration is valid and points where an installed
    // server keeps things.
    let config = text(&run(Command::new("/usr/bin/tessera").args(["check-config", "/etc/tessera/tessera.toml"])));
    for (key, value) in [
        ("source.root", "\"/srv/iiif\""),
        ("cache.disk_dir", "\"/var/cache/tessera/tiles\""),
        ("viewer.static_dir", "\"/usr/share/tessera/mirador\""),
    ] {
        let line = config.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_default();
        assert!(line.contains(value) && line.contains("# file /etc/tessera/tessera.toml"), "{key}: {line:?}");
    }

    // Served with that configuration; only the image folder, its catalogue
    // and the tile folder are this test's (no /srv/iiif here).
    let images = image_dir();
    let tiles = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let served = Served(
        Command::new("/usr/bin/tessera")
            .args(["serve", "--config", "/etc/tessera/tessera.toml", "--listen", &addr.to_string(), "--images"])
            .arg(images.path())
            .env("TESSERA_PRESENTATION__CATALOGUE_ROOT", images.path().join("items"))
            .env("TESSERA_CACHE__DISK_DIR", tiles.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(addr, "/health", &[]).map(|r| r.status).ok() != Some(200) {
        assert!(Instant::now() < deadline, "the installed server did not answer /health");
        std::thread::sleep(Duration::from_millis(50));
    }
    let info = http_get(addr, "/iiif/2/photo.jpg/info.json", &[]).unwrap();
    assert_eq!(info.status, 200);
    let info: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert_eq!((info["width"].as_u64(), info["height"].as_u64()), (Some(1200), Some(800)));
    let tile = http_get(addr, "/iiif/2/photo.jpg/0,0,256,256/256,/0/default.jpg", &[]).unwrap();
    assert_eq!((tile.status, tile.header("content-type")), (200, Some("image/jpeg")));
    let mirador = http_get(addr, "/static/mirador.min.js", &[]).unwrap();
    let shipped = std::fs::read("/usr/share/tessera/mirador/mirador.min.js").unwrap();
    assert_eq!(mirador.status, 200);
    assert!(mirador.body == shipped, "/static/mirador.min.js is not the packaged Mirador");
    drop(served);

    // The unit: where Debian keeps units, hardened, and valid.
    let files = text(&run(Command::new("dpkg").args(["-L", "tessera"])));
    let unit = files.lines().find(|l| l.ends_with("/systemd/system/tessera.service")).expect("no unit in the package");
    let unit_text = std::fs::read_to_string(unit).unwrap();
    for line in ["DynamicUser=yes", "ProtectSystem=strict", "LimitNOFILE=", "Restart=on-failure", "ReadOnlyPaths="] {
        assert!(unit_text.lines().any(|l| l.starts_with(line)), "the unit lacks {line}");
    }
    let verify = Command::new("systemd-analyze").args(["verify", unit]).output().unwrap();
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && !complaints.contains("tessera.service"),
        "systemd-analyze verify: {}\n{complaints}",
        verify.status
    );

    drop(_installed);
    assert!(!Path::new("/usr/bin/tessera").exists(), "purge left /usr/bin/tessera");
    assert!(!Path::new("/etc/tessera/tessera.toml").exists(), "purge left the conffile");
}
