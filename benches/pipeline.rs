//! Stage benchmarks: parse, plan, JPEG/PNG decode (full, DCT-scaled,
//! cropped), JPEG 2000 region decode at several reduce levels, resize,
//! rotate, encode, tile-cache get, and one whole tile render. (The GPU
//! resize is in benches/gpu_transform.rs, beside the CPU one.)
//! `cargo bench --bench pipeline`; `cargo test --benches` runs each once.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tessera::codec::{self, encode};
use tessera::iiif::{v2, ApiVersion, Format};
use tessera::plan::{plan, Limits, Rect, SourceFacts};
use tessera::samples::generate;
use tessera::transform::{resize, rotate};

fn bench(c: &mut Criterion) {
    c.bench_function("parse/v2 tile url", |b| {
        b.iter(|| {
            v2::parse(black_box("2048,1024,512,512"), black_box("256,"), black_box("0"), black_box("default.jpg"))
        })
    });
    let facts = SourceFacts { width: 6000, height: 4000, scale_factors: vec![1, 2, 4, 8] };
    let req = v2::parse("1024,1024,512,512", "256,", "0", "default.jpg").unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("plan/tile", |b| {
        b.iter(|| plan(black_box(&facts), black_box(&req), &Limits::default(), ApiVersion::V2))
    });

    let photo = generate::photo_like(2048, 2048, 3);
    let jpg = encode::encode(&photo, Format::Jpg, 90).unwrap_or_default();
    let info = codec::probe(&jpg).unwrap_or_else(|e| panic!("{e}"));
    let full = Rect { x: 0, y: 0, w: 2048, h: 2048 };
    let mut g = c.benchmark_group("decode/jpeg 2048²");
    g.sample_size(20);
    g.bench_function("full at 1/1", |b| b.iter(|| codec::decode(&jpg, &info, full, 1, u64::MAX)));
    g.bench_function("full at 1/8", |b| b.iter(|| codec::decode(&jpg, &info, full, 8, u64::MAX)));
    let crop = Rect { x: 1000, y: 1000, w: 512, h: 512 };
    g.bench_function("512² crop at 1/1", |b| b.iter(|| codec::decode(&jpg, &info, crop, 1, u64::MAX)));
    g.finish();

    // JPEG 2000: a 2048² photo tiled 512, 5 levels; 512² output regions.
    let j2 = {
        use tessera::codec::jp2;
        let input = jp2::EncodeInput::from_pixels(&photo);
        let params = jp2::EncodeParams {
            tile_size: Some((512, 512)),
            levels: 5,
            lossless: false,
            rate: Some(20.0),
            layers: 1,
            progression: jp2::Progression::Rpcl,
            precincts: None,
            container: jp2::Container::Jp2,
        };
        jp2::encode(&input, &params).unwrap_or_else(|e| panic!("{e}"))
    };
    let mut g = c.benchmark_group("decode/jp2 2048² tiled 512");
    g.sample_size(20);
    for (reduce, side) in [(0u32, 512u32), (1, 1024), (2, 2048)] {
        let area = tessera::codec::jp2::DecodeArea { x: 0, y: 0, w: side, h: side };
        g.bench_function(format!("{side}² region at reduce {reduce} → 512²"), |b| {
            b.iter(|| tessera::codec::jp2::decode(&j2, area, reduce, u64::MAX))
        });
    }
    g.finish();

    let cache = tessera::cache::TileCache::new(64 << 20);
    let version = tessera::source::SourceVersion { len: 1, mtime_ns: 2 };
    for i in 0..1000 {
        cache.insert(
            tessera::cache::TileKey {
                file: "/images/large.jp2".into(),
                version,
                canonical: format!("2:{i},0,512,512/256,/0/default.jpg"),
            },
            std::sync::Arc::new(tessera::cache::Encoded { body: vec![0u8; 20_000].into(), media_type: "image/jpeg" }),
        );
    }
    let key = tessera::cache::TileKey {
        file: "/images/large.jp2".into(),
        version,
        canonical: "2:500,0,512,512/256,/0/default.jpg".into(),
    };
    c.bench_function("cache/get hit", |b| b.iter(|| cache.get(black_box(&key))));

    let png = encode::encode(&photo.crop(0, 0, 512, 512), Format::Png, 90).unwrap_or_default();
    c.bench_function("decode/png 512²", |b| b.iter(|| codec::png::decode(&png, u64::MAX)));

    let mut g = c.benchmark_group("transform");
    g.sample_size(20);
    g.bench_function("resize 2048²→512² lanczos3", |b| b.iter(|| resize::resize(photo.clone(), 512, 512)));
    let tile = photo.crop(0, 0, 512, 512);
    g.bench_function("rotate 512² by 90", |b| b.iter(|| rotate::quarter(&tile, 1)));
    g.bench_function("rotate 512² by 30", |b| b.iter(|| rotate::arbitrary(&tile, 30.0, true)));
    g.finish();

    let mut g = c.benchmark_group("encode 512²");
    for f in [Format::Jpg, Format::Png, Format::Webp] {
        g.bench_function(f.extension(), |b| b.iter(|| encode::encode(&tile, f, 85)));
    }
    g.finish();

    let p = plan(
        &SourceFacts { width: 2048, height: 2048, scale_factors: info.scale_factors.clone() },
        &req,
        &Limits::default(),
        ApiVersion::V2,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let m = tessera::metrics::Metrics::new().unwrap_or_else(|e| panic!("{e}"));
    let s = tessera::render::RenderSettings { jpeg_quality: 85, webp_lossless: false, max_decode_pixels: u64::MAX };
    c.bench_function("render/one 256² tile from a 2048² JPEG", |b| {
        let input = || tessera::render::Input::Decode { data: &jpg, info: &info };
        b.iter(|| tessera::render::render(input(), &p, &s, &m, &tessera::transform::Backend::Cpu))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
