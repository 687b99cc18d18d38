//! CPU vs GPU transform: RGB 1024²→256², 4096²→512², 8192²→1024² (resize
//! only), 4096²→512² with a quarter turn and gray quality, and a sub-pixel
//! crop of a reduced decode to 1024².
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
    let gpu = match Gpu::new(&GpuOptions { allow_software: true }) {
        Ok(g) => {
            println!("GPU adapter: {} (software: {})", g.adapter_description(), g.is_software());
            Some(g)
        }
        Err(e) => {
            println!("SKIPPED gpu benches: no GPU adapter ({e}); install mesa-vulkan-drivers for lavapipe");
            None
        }
    };
    let plain =
        |o: u32| GpuJob { out_w: o, out_h: o, mirror: false, quarter_turns: 0, quality: GpuQuality::Keep, crop: None };
    let cases = [
        ("1024²→256²", 1024u32, plain(256)),
        ("4096²→512²", 4096, plain(512)),
        ("8192²→1024²", 8192, plain(1024)),
        ("4096²→512² rot90 gray", 4096, GpuJob { quarter_turns: 1, quality: GpuQuality::Gray, ..plain(512) }),
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

criterion_group!(benches, bench);
criterion_main!(benches);
