//! CPU vs GPU transform: RGB 1024²→256², 4096²→512², 8192²→1024² (resize
//! only), 4096²→512² with a quarter turn and gray quality, 1024² turned by
//! 30°, and a sub-pixel crop of a reduced decode to 1024²; and a batch of
//! 64 tiles from one
//! decoded area (CPU, GPU one job each, GPU in one batch, GPU in one batch
//! reading the area kept resident on the device).
//!
//! `cargo bench --bench gpu_transform`. The GPU half uses the best adapter
//! wgpu finds (hardware first, a software one such as lavapipe otherwise) and
//! prints a SKIPPED line and does nothing if there is none. On Linux without a
//! GPU: `apt-get install mesa-vulkan-drivers`, then run with
//! `WGPU_BACKEND=vulkan VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json`.
//! The CPU side excludes the input clone (`resize` takes the image by value);
//! the GPU side includes upload, all passes and readback.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tessera::pixels::{Layout, Pixels};
use tessera::transform::gpu::{Gpu, GpuJob, GpuOptions, GpuQuality};

/// A photo-like RGB image: gradients, a disc with a hard edge, fine stripes, noise.
fn photo(w: u32, h: u32) -> Pixels {
    let mut d = Vec::with_capacity(w as usize * h as usize * 3);
    let mut s = 0x9e37_79b9u32;
    let (cx, cy, r2) = (w as i64 / 2, h as i64 / 3, (w.min(h) as i64 / 4).pow(2));
    for y in 0..h {
        for x in 0..w {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let n = (s % 17) as i32 - 8;
            let (dx, dy) = (x as i64 - cx, y as i64 - cy);
            let px: [i32; 3] = if dx * dx + dy * dy < r2 {
                [230, 40, 30]
            } else if (x / 2) % 9 == 0 {
                [20, 20, 20]
            } else {
                [(x * 255 / w) as i32, (y * 255 / h) as i32, ((x + y) * 255 / (w + h)) as i32]
            };
            d.extend(px.map(|v| (v + n).clamp(0, 255) as u8));
        }
    }
    Pixels::new(w, h, Layout::Rgb, d).unwrap_or_else(|e| panic!("{e}"))
}

fn bench(c: &mut Criterion) {
    let gpu = match Gpu::new(&GpuOptions { allow_software: true, resident_bytes: 0 }) {
        Ok(g) => {
            println!("GPU adapter: {} (software: {})", g.adapter_description(), g.is_software());
            Some(g)
        }
        Err(e) => {
            println!("SKIPPED gpu benches: no GPU adapter ({e}); install mesa-vulkan-drivers for lavapipe");
            None
        }
    };
    let plain = |o: u32| GpuJob::resize_to(o, o);
    let cases = [
        ("1024²→256²", 1024u32, plain(256)),
        ("4096²→512²", 4096, plain(512)),
        ("8192²→1024²", 8192, plain(1024)),
        ("4096²→512² rot90 gray", 4096, GpuJob { quarter_turns: 1, quality: GpuQuality::Gray, ..plain(512) }),
        // IIIF `…/!1024,1024/30/`: a turn by an angle that is not a quarter.
        (
            "1024² rotate 30°",
            1024,
            GpuJob {
                arbitrary: Some(tessera::transform::gpu::Arbitrary { degrees: 30.0, transparent: false }),
                ..plain(1024)
            },
        ),
        // A reduced decode: the region snapped outward, cropped back by fractions.
        ("2050²→1024² sub-pixel crop", 2050, GpuJob { crop: Some((0.75, 1.5, 2048.0, 2047.25)), ..plain(1024) }),
    ];
    for (name, size, job) in cases {
        let input = photo(size, size);
        let mut g = c.benchmark_group(format!("transform rgb {name}"));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(if size >= 8192 { 20 } else { 5 }));
        g.bench_function("cpu", |b| {
            b.iter_batched(|| input.clone(), |p| job.run_on_cpu(black_box(p)), BatchSize::LargeInput)
        });
        if let Some(gpu) = &gpu {
            match gpu.apply(&input, &job) {
                Ok(first) => {
                    if first != job.run_on_cpu(input.clone()) {
                        println!("note: GPU output differs from the CPU for {name}");
                    }
                    g.bench_function("gpu", |b| b.iter(|| gpu.apply(black_box(&input), &job)));
                }
                Err(e) => println!("SKIPPED gpu {name}: {e}"),
            }
        }
        g.finish();
    }
}

/// A batch: the 64 tiles of one decoded 4096² area, each a 512² cut
/// resized to 256² (a viewer between two levels), as eager tiling asks. The
/// CPU cuts and resizes each; the GPU does them one job each, then all in
/// one batch (one submission, one wait).
fn bench_batch(c: &mut Criterion) {
    let gpu = Gpu::new(&GpuOptions { allow_software: true, resident_bytes: 1 << 30 }).ok();
    let unit = std::sync::Arc::new(photo(4096, 4096));
    let tiles: Vec<(u32, u32)> = (0..64).map(|i| ((i % 8) * 512, (i / 8) * 512)).collect();
    let job =
        |(x, y): (u32, u32)| GpuJob { crop: Some((x as f64, y as f64, 512.0, 512.0)), ..GpuJob::resize_to(256, 256) };
    let mut g = c.benchmark_group("transform rgb 64 tiles 512²→256² of one 4096² area");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("cpu", |b| {
        b.iter(|| {
            for &(x, y) in &tiles {
                let part = unit.crop(x, y, 512, 512);
                black_box(GpuJob { crop: None, ..job((x, y)) }.run_on_cpu(part));
            }
        })
    });
    if let Some(gpu) = &gpu {
        let jobs: Vec<(&Pixels, GpuJob)> = tiles.iter().map(|&t| (&*unit, job(t))).collect();
        if gpu.apply_batch(&jobs).iter().all(Result::is_ok) {
            g.bench_function("gpu one job each", |b| {
                b.iter(|| {
                    for (p, j) in &jobs {
                        let _ = black_box(gpu.apply(p, j));
                    }
                })
            });
            g.bench_function("gpu batch", |b| b.iter(|| black_box(gpu.apply_batch(&jobs))));
            // The unit kept on the device (uploaded by the first run): each
            // batch uploads only its parameters and tables.
            let rects: Vec<((u32, u32, u32, u32), GpuJob)> =
                tiles.iter().map(|&(x, y)| ((x, y, 512, 512), GpuJob { crop: None, ..job((x, y)) })).collect();
            if gpu.apply_in(&unit, &rects).iter().all(Result::is_ok) {
                g.bench_function("gpu batch from the resident unit", |b| {
                    b.iter(|| black_box(gpu.apply_in(&unit, &rects)))
                });
            }
        } else {
            println!("SKIPPED gpu batch: a job failed");
        }
    }
    g.finish();
}

criterion_group!(benches, bench, bench_batch);
criterion_main!(benches);
