//! Restarts and upgrades under load with socket activation: the listening
//! socket belongs to the parent (systemd's socket unit; here the test), the
//! server takes it from `LISTEN_FDS`/`LISTEN_PID`, and a restart with a new
//! binary (SIGTERM, drain, exit, start) answers every request of a load
//! test running through it.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Starts `bin` serving `images` on the socket `listener` (as descriptor 3,
/// `LISTEN_FDS=1`, `LISTEN_PID` its own pid: `sh` sets it, then `exec`s
/// the server under the same pid, as systemd does).
fn activated(bin: &Path, images: &Path, tiles: &Path, listener: &std::net::TcpListener, env: &[(&str, &str)]) -> Child {
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\""])
        .arg(bin)
        .args(["serve", "--images"])
        .arg(images)
        .env("RUST_LOG", "warn")
        .env("TESSERA_CACHE__DISK_DIR", tiles)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: `as_descriptor_3` makes only async-signal-safe calls, in the
    // child between fork and exec.
    unsafe {
        cmd.pre_exec(move || as_descriptor_3(fd));
    }
    cmd.spawn().expect("spawn sh")
}

/// In the child before exec: `fd` becomes descriptor 3, inherited by the
/// program exec'd (dup2 clears close-on-exec; if `fd` is 3 already, the
/// flag is cleared directly). Async-signal-safe calls only.
fn as_descriptor_3(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: plain system calls on descriptors of this process.
    let r = unsafe {
        if fd == 3 {
            libc::fcntl(3, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, 3)
        }
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn wait_healthy(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http_get(addr, "/health", &[]).is_ok_and(|r| r.status == 200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no server answered on the handed-over socket");
}

/// A server process, killed if the test ends before stopping it (a failed
/// assertion must not leave it running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("the server did not stop after SIGTERM");
}

#[test]
fn a_socket_activated_server_restarted_with_a_new_binary_under_load_answers_every_request() {
    let d = image_dir();
    let tiles = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // The "upgrade": the same build under another file name, as a package
    // replaces the binary before the restart.
    let old_bin = work.path().join("tessera-old");
    let new_bin = work.path().join("tessera-new");
    std::fs::copy(env!("CARGO_BIN_EXE_tessera"), &old_bin).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_tessera"), &new_bin).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // A short drain: /health turns 503, requests are still answered, then
    // the old process lets go of the socket.
    let env = [("TESSERA_SERVER__DRAIN_SECS", "1")];
    let mut old = Running(activated(&old_bin, d.path(), tiles.path(), &listener, &env));
    wait_healthy(addr);

    // Eight viewers for six seconds, through the restart.
    let json = work.path().join("load.json");
    let url = format!("http://{addr}/iiif/2/photo/info.json");
    let load = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["loadtest", &url, "-c", "8", "--duration", "6", "--warmup", "0", "--viewport", "400x300", "--quiet"])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let restart = Instant::now();
    terminate(&mut old.0);
    // Nothing accepts now; the socket, held here as systemd holds it, queues
    // new connections until the new process takes them.
    let mut new = Running(activated(&new_bin, d.path(), tiles.path(), &listener, &env));
    wait_healthy(addr);
    let gap = restart.elapsed();
    let out = load.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    eprintln!(
        "restart under load: {} requests, {} errors {}, statuses {}, restart took {:.2} s",
        r["requests"],
        r["errors"],
        r["errors_by_kind"],
        r["status"],
        gap.as_secs_f64()
    );
    assert!(r["requests"].as_u64().unwrap() > 100, "{r}");
    assert_eq!(r["errors"], 0, "no refused or broken connection: {}", r["errors_by_kind"]);
    let statuses = r["status"].as_object().unwrap();
    assert!(statuses.keys().all(|s| s == "200" || s == "304"), "every request answered: {statuses:?}");
    // The new process serves on the same socket.
    assert_eq!(http_get(addr, "/iiif/2/photo/info.json", &[]).unwrap().status, 200);
    terminate(&mut new.0);
}

#[test]
fn a_server_given_a_descriptor_that_is_not_a_listening_socket_says_so_and_stops() {
    let d = image_dir();
    let tiles = tempfile::tempdir().unwrap();
    let file = std::fs::File::open(d.path().join("photo.jpg")).unwrap();
    let fd = file.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--images"])
        .arg(d.path())
        .env("TESSERA_CACHE__DISK_DIR", tiles.path());
    // SAFETY: as in `activated`.
    unsafe {
        cmd.pre_exec(move || as_descriptor_3(fd));
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("socket activation") && err.contains("not"), "{err}");
}
