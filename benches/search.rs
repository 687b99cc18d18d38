//! Content Search over a 500-page item: the latency of one query, from the
//! query string to the serialised JSON document the server sends, measured
//! query by query so that p50 and p99 come out (criterion reports means).
//!
//! The item: 500 pages of 320 words each (40 lines of 8), drawn from a
//! 20,000-word vocabulary with Zipf-like frequencies (seeded), so common
//! words have tens of thousands of hits and rare ones a few.
//!
//! Run: `cargo bench --bench search` (figures in docs/bench/search.md).

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tessera::presentation::ocr::Word;
use tessera::presentation::search::{self, MemoryIndex, SearchBackend};

const PAGES: usize = 500;
const LINES: u32 = 40;
const WORDS_PER_LINE: u32 = 8;
const VOCABULARY: usize = 20_000;
const RUNS: usize = 500;

/// Word `i` of the vocabulary: `w{i}` spelled with letters.
fn vocab(i: usize) -> String {
    let mut s = String::from("w");
    let mut n = i;
    loop {
        s.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return s;
        }
    }
}

fn item() -> Vec<Vec<Word>> {
    let mut rng = SmallRng::seed_from_u64(500);
    (0..PAGES)
        .map(|_| {
            let mut words = Vec::new();
            for line in 0..LINES {
                for k in 0..WORDS_PER_LINE {
                    // Zipf-like: rank = VOCABULARY^u - 1 for uniform u.
                    let u: f64 = rng.random();
                    let rank = ((VOCABULARY as f64).powf(u) as usize).saturating_sub(1).min(VOCABULARY - 1);
                    words.push(Word { text: vocab(rank), x: 100 + k * 150, y: 100 + line * 60, w: 120, h: 40, line });
                }
            }
            words
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let t = Instant::now();
    let index = MemoryIndex::new(item());
    println!("index of {} words on {PAGES} pages built in {:.0?}", index.word_count(), t.elapsed());
    let queries = [
        ("most common word", vocab(0)),
        ("word of rank 100", vocab(100)),
        ("rare word", vocab(2_000)),
        ("absent word", "unicorn".to_string()),
        ("three words", format!("{} {} {}", vocab(3), vocab(50), vocab(900))),
        ("two-word phrase", format!("\"{} {}\"", vocab(0), vocab(1))),
    ];
    println!("| query | hits | p50 | p99 | max |\n|---|---|---|---|---|");
    for (name, q) in &queries {
        let mut times = Vec::with_capacity(RUNS);
        let mut hits = 0;
        for _ in 0..RUNS {
            let start = Instant::now();
            let r = index.search(q, 0);
            let doc = search::response(
                &r,
                "http://h/iiif/i/search",
                &|p| format!("http://h/iiif/i/search?q=x&page={p}"),
                &|n| format!("http://h/iiif/i/canvas/{n}"),
                &[],
            );
            let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
            times.push(start.elapsed());
            hits = r.total_hits;
            std::hint::black_box(body);
        }
        times.sort();
        println!(
            "| {name} | {hits} | {:.2?} | {:.2?} | {:.2?} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[times.len() - 1]
        );
    }
    let mut times = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let prefix = &vocab(i)[..2];
        let start = Instant::now();
        std::hint::black_box(index.autocomplete(prefix, 1));
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "| autocomplete (2-letter prefixes) | - | {:.2?} | {:.2?} | {:.2?} |",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
}
