//! The bundled sample images. The repository ships no binary images: on first
//! start, Tessera generates them into the default image root (deterministic
//! procedural pictures, see [`generate`]), so `cargo run --release` on a fresh
//! clone serves something real with no other step.

pub mod generate;

use std::io;
use std::path::{Path, PathBuf};

use crate::codec::encode;
use crate::iiif::Format;
use crate::pixels::Pixels;

/// The validator's identifier (served without extension).
pub const VALIDATOR_ID: &str = "67352ccc-d1b0-11e1-89ae-279075081939";

/// One sample file: its name and how to make it.
struct Sample {
    name: &'static str,
    make: fn() -> io::Result<Vec<u8>>,
}

fn enc(p: &Pixels, f: Format, q: u8) -> io::Result<Vec<u8>> {
    encode::encode(p, f, q).map_err(|e| io::Error::other(e.to_string()))
}

const SAMPLES: &[Sample] = &[
    Sample {
        name: "67352ccc-d1b0-11e1-89ae-279075081939.png",
        make: || enc(&generate::validator_image(), Format::Png, 90),
    },
    Sample { name: "landscape.jpg", make: || enc(&generate::photo_like(6000, 4000, 1), Format::Jpg, 90) },
    Sample { name: "meadow.png", make: || enc(&generate::photo_like(1600, 1200, 7), Format::Png, 90) },
    Sample { name: "page-1.jpg", make: || enc(&generate::book_page(2000, 3000, 1), Format::Jpg, 88) },
];

/// Writes any missing sample into `dir`. Returns the names written.
pub fn ensure(dir: &Path) -> io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for s in SAMPLES {
        let path = dir.join(s.name);
        if path.exists() {
            continue;
        }
        let bytes = (s.make)()?;
        write_atomically(&path, &bytes)?;
        written.push(s.name.to_string());
    }
    Ok(written)
}

/// Writes through a temporary name and renames, so a server never maps a
/// half-written file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp: PathBuf = path.with_extension("partial");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
