//! Decodes every tile of a TIFF's first page with the `tiff` crate, as
//! Tessera does (`Decoder::read_chunk` over the file's bytes in memory),
//! best of three runs; the other half of `benches/compare/tiff_decoders.sh`
//! (libtiff is the first).
//!
//!   cargo run --release --example tiff_chunks -- FILE.tif

use std::io::Cursor;
use std::time::Instant;

use tiff::decoder::{Decoder, DecodingResult};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: tiff_chunks FILE.tif");
        std::process::exit(2);
    };
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let mut best = f64::MAX;
    let mut tiles = 0;
    for _ in 0..3 {
        let mut d = match Decoder::new(Cursor::new(&data[..])).and_then(|mut d| d.tile_count().map(|n| (d, n))) {
            Ok((d, n)) => {
                tiles = n;
                d
            }
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(1);
            }
        };
        let t = Instant::now();
        for i in 0..tiles {
            match d.read_chunk(i) {
                Ok(DecodingResult::U8(v)) => std::hint::black_box(v),
                Ok(_) | Err(_) => {
                    eprintln!("{path}: tile {i} is not 8-bit or does not decode");
                    std::process::exit(1);
                }
            };
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("tiff crate: {tiles} tiles, best {best:.1} ms");
}
