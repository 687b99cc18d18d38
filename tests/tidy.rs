//! Checks of the source tree itself, so that the invariants
//! docs/ARCHITECTURE.md states about the code's shape hold by test rather
//! than by review (in the manner of rust-analyzer's tidy tests): which
//! layers may name which, where `unsafe` may appear, that every module says
//! what it owns, that the architecture document names every file, and that
//! server code has no `unwrap`, `expect` or `panic!`.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, as (path relative to `src/`, text).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files.sort();
    let root = src();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The text of a file without its test code: a `tests.rs` file is all test
/// code, and elsewhere everything from `#[cfg(test)]` on (test modules sit
/// at the end of a file, by this project's rule).
fn non_test(rel: &str, text: &str) -> String {
    if rel.ends_with("/tests.rs") {
        return String::new();
    }
    let cut = text.find("#[cfg(test)]").unwrap_or(text.len());
    // Comments may name anything; only code counts.
    text[..cut]
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with("//")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_module_starts_by_saying_what_it_owns() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, text)| rel != "main.rs" && !text.trim_start().starts_with("//!"))
        .map(|(rel, _)| rel)
        .collect();
    assert!(missing.is_empty(), "files without a leading //! comment: {missing:?}");
}

/// The places in the non-test code of the files `layer` selects that name
/// one of `forbidden`.
fn names_in(layer: impl Fn(&str) -> bool, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (rel, text) in sources().into_iter().filter(|(rel, _)| layer(rel)) {
        let code = non_test(&rel, &text);
        found.extend(forbidden.iter().filter(|f| code.contains(*f)).map(|f| format!("{rel} names {f}")));
    }
    found
}

#[test]
fn parsing_and_planning_do_no_io_and_know_no_source_or_codec() {
    let pure = |rel: &str| rel == "model.rs" || rel == "plan.rs" || rel.starts_with("iiif/");
    let found = names_in(
        pure,
        &[
            "std::fs",
            "std::net",
            "std::io::Read",
            "std::process",
            "tokio",
            "hyper",
            "crate::source",
            "crate::codec",
            "crate::state",
            "crate::service",
            "crate::pool",
            "crate::cache",
        ],
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn codecs_and_transforms_know_nothing_of_http_or_iiif() {
    let layer = |rel: &str| rel.starts_with("codec/") || rel.starts_with("transform/") || rel == "pixels.rs";
    let found = names_in(
        layer,
        &[
            "http::",
            "hyper",
            "crate::web",
            "crate::router",
            "crate::service",
            "crate::state",
            "crate::iiif",
            "crate::plan",
            "crate::source",
            "crate::cache",
        ],
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn unsafe_code_is_denied_crate_wide_and_allowed_only_where_c_or_the_kernel_is_called() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    assert!(lib.contains("#![deny(unsafe_code)]"), "lib.rs must deny unsafe code");
    // The files where `#[allow(unsafe_code)]` may appear, and what they allow.
    let allowed = [
        "codec/mod.rs",     // codec::jpeg: libjpeg-turbo
        "codec/jp2/mod.rs", // jp2::ffi, jp2::encode (OpenJPEG) and its tests
        "source/mod.rs",    // source::mmap: the map and its SIGBUS handler
        "source/http.rs",   // flock of the run folder
        "server.rs",        // getrlimit/setrlimit
        "lib.rs",           // socket_activation: the descriptor handed over (getsockopt, fcntl)
    ];
    let mut found = Vec::new();
    for (rel, text) in sources() {
        if text.contains("allow(unsafe_code)") && !allowed.contains(&rel.as_str()) {
            found.push(rel);
        }
    }
    assert!(found.is_empty(), "unsafe allowed outside the documented places: {found:?}");
}

#[test]
fn the_architecture_document_names_every_source_file() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for (rel, _) in sources() {
        if rel.ends_with("tests.rs") {
            continue;
        }
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        let folder = rel.rsplit_once('/').map(|(d, _)| format!("src/{d}/"));
        let named = doc.contains(&format!("src/{rel}"))
            || (doc.contains(&format!("`{name}`")) && folder.as_ref().is_some_and(|f| doc.contains(f.as_str())))
            || (name == "mod.rs" && folder.as_ref().is_some_and(|f| doc.contains(f.as_str())));
        if !named {
            missing.push(rel);
        }
    }
    assert!(missing.is_empty(), "files docs/ARCHITECTURE.md does not name: {missing:?}");
}

#[test]
fn server_code_has_no_unwrap_expect_or_panic() {
    // Command-line and build-time code may stop the program; the server may not.
    let exempt = |rel: &str| rel == "main.rs" || rel.starts_with("samples/");
    let mut found = Vec::new();
    for (rel, text) in sources().into_iter().filter(|(rel, _)| !exempt(rel)) {
        for (i, line) in non_test(&rel, &text).lines().enumerate() {
            for bad in [".unwrap()", ".expect(", "panic!(", "unreachable!(", "todo!(", "unimplemented!("] {
                if line.contains(bad) {
                    found.push(format!("{rel}: {} (code line {})", line.trim(), i + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "{} uses:\n{}", found.len(), found.join("\n"));
}
