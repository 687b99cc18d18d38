//! Socket activation: a listening socket handed over by the process that
//! started the server (systemd's `ListenStream=` in a `.socket` unit,
//! `systemd-socket-activate`, or any supervisor speaking the same
//! protocol: `LISTEN_PID` names the process the sockets are for,
//! `LISTEN_FDS` how many, passed from file descriptor 3 on). The server
//! then accepts on that socket instead of binding its own. Since the parent
//! keeps the socket open, a restart or an upgrade refuses no connection:
//! the kernel queues them while no process accepts, and the next process
//! takes them.
//!
//! [`take_from_environment`] runs first thing in `main`, while the process
//! has one thread: it checks the descriptor (a listening TCP socket), takes
//! it, marks it close-on-exec and removes the variables, so that nothing
//! the server starts inherits either. [`listener`] hands it to the server.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::Mutex;

/// The first descriptor of the protocol (after standard input, output and
/// error).
const FIRST_FD: RawFd = 3;

/// The socket taken from the environment, until the server takes it.
static TAKEN: Mutex<Option<Handed>> = Mutex::new(None);

/// What the parent handed over.
struct Handed {
    listener: TcpListener,
    /// Sockets beyond the first (only the first is served).
    ignored: usize,
}

/// Why a handed-over socket cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivationError {
    #[error("LISTEN_FDS={0:?} is not a count of sockets")]
    BadCount(String),
    #[error("socket activation: file descriptor 3 is not a listening TCP socket ({0})")]
    NotListening(String),
}

/// Takes the socket the parent handed over, if the environment says there
/// is one for this process. Call once, before any other thread starts (it
/// changes the environment). `Ok(false)`: no socket activation (the server
/// binds its own).
pub fn take_from_environment() -> Result<bool, ActivationError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    // The variables are for this process only, whatever they say.
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let Some(count) = handed_count(pid.as_deref(), fds.as_deref(), std::process::id())? else {
        return Ok(false);
    };
    check_listening_tcp(FIRST_FD).map_err(ActivationError::NotListening)?;
    // SAFETY: descriptor 3 was handed to this process for it to own (the
    // protocol), nothing else in the process has taken it (this runs once,
    // first), and it was just checked to be a listening TCP socket.
    let listener = unsafe { TcpListener::from_raw_fd(FIRST_FD) };
    // Not inherited by anything the server starts.
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe {
        let flags = libc::fcntl(FIRST_FD, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(FIRST_FD, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    *taken = Some(Handed { listener, ignored: count - 1 });
    Ok(true)
}

/// The handed-over socket, once (None when there was none), and how many
/// more sockets were handed over and are not served.
pub fn listener() -> Option<(TcpListener, usize)> {
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    taken.take().map(|h| (h.listener, h.ignored))
}

/// How many sockets the variables hand to process `me`: None when they are
/// absent or for another process (a parent's variables inherited by
/// mistake), as systemd's `sd_listen_fds` reads them.
fn handed_count(pid: Option<&str>, fds: Option<&str>, me: u32) -> Result<Option<usize>, ActivationError> {
    let (Some(pid), Some(fds)) = (pid, fds) else { return Ok(None) };
    if pid.trim().parse::<u32>().ok() != Some(me) {
        return Ok(None);
    }
    match fds.trim().parse::<usize>() {
        Ok(0) => Ok(None),
        Ok(n) if n <= 1024 => Ok(Some(n)),
        _ => Err(ActivationError::BadCount(fds.to_string())),
    }
}

/// Whether `fd` is a socket of the IPv4 or IPv6 family, of stream type,
/// listening; the reason when not.
fn check_listening_tcp(fd: RawFd) -> Result<(), String> {
    let opt = |level: libc::c_int, name: libc::c_int| -> Result<libc::c_int, String> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`; an fd
        // that is not a socket (or not open) makes it fail with an error.
        let r = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut libc::c_int).cast(), &mut len) };
        if r == 0 {
            Ok(v)
        } else {
            Err(std::io::Error::last_os_error().to_string())
        }
    };
    let domain = opt(libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err("not an IPv4 or IPv6 socket".into());
    }
    if opt(libc::SOL_SOCKET, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err("not a stream socket".into());
    }
    if opt(libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 1 {
        return Err("not listening".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_variables_count_only_for_the_process_they_name() {
        assert_eq!(handed_count(Some("42"), Some("1"), 42), Ok(Some(1)));
        assert_eq!(handed_count(Some("42"), Some("2"), 42), Ok(Some(2)));
        assert_eq!(handed_count(Some("41"), Some("1"), 42), Ok(None), "a parent's, inherited");
        assert_eq!(handed_count(None, Some("1"), 42), Ok(None));
        assert_eq!(handed_count(Some("42"), None, 42), Ok(None));
        assert_eq!(handed_count(Some("42"), Some("0"), 42), Ok(None));
        assert!(matches!(handed_count(Some("42"), Some("x"), 42), Err(ActivationError::BadCount(_))));
    }

    #[test]
    fn only_a_listening_tcp_socket_is_accepted() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(check_listening_tcp(l.as_raw_fd()), Ok(()));
        let connected = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert_eq!(check_listening_tcp(connected.as_raw_fd()), Err("not listening".into()));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(check_listening_tcp(udp.as_raw_fd()), Err("not a stream socket".into()));
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(check_listening_tcp(file.as_raw_fd()).is_err(), "a file");
    }
}
