//! The GPU backend against the CPU path, on whatever adapter exists (lavapipe
//! in CI): every layout, scale, turn and quality, banded inputs, the buffer
//! pool's bounds, refused jobs and a lost device. Skips cleanly without an
//! adapter unless `TESSERA_REQUIRE_GPU` is set.

use super::*;
use crate::transform::resize;
use std::sync::{Arc, OnceLock};

const SKIP: &str = "SKIPPED: no GPU adapter (install mesa-vulkan-drivers)";

fn no_gpu(e: &str) {
    if std::env::var("TESSERA_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("TESSERA_REQUIRE_GPU=1 but no GPU: {e}");
    }
    println!("{SKIP} ({e})");
}

fn open() -> Result<Gpu, GpuError> {
    Gpu::new(&GpuOptions { allow_software: true, resident_bytes: 0 })
}

/// The device shared by the tests, or None (after printing the skip line)
/// when there is no adapter and TESSERA_REQUIRE_GPU=1 is not set. Any
/// other failure to open the device (e.g. a shader that doesn't compile)
/// fails the test.
fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Result<Gpu, GpuError>> = OnceLock::new();
    match GPU.get_or_init(open) {
        Ok(g) => Some(g),
        Err(GpuError::NoAdapter(e)) => {
            no_gpu(e);
            None
        }
        Err(e) => panic!("GPU adapter found but unusable: {e}"),
    }
}

/// Gradients, a hard-edged disc, a checker band, and seeded noise.
fn structured(w: u32, h: u32, layout: Layout, seed: u32) -> Pixels {
    let c = layout.channels();
    let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(u64::from(seed));
    let mut d = Vec::with_capacity(w as usize * h as usize * c);
    let (cx, cy, r) = (w as f32 * 0.6, h as f32 * 0.4, (w.min(h) as f32) * 0.3);
    for y in 0..h {
        for x in 0..w {
            let gx = (x * 255 / w.max(2).saturating_sub(1).max(1)) as i32;
            let gy = (y * 255 / h.max(2).saturating_sub(1).max(1)) as i32;
            let inside = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < r * r;
            let checker = ((x / 3 + y / 5) % 2 == 0) && y > h / 2;
            let n = rand::Rng::random_range(&mut rng, -20..=20);
            let mut px = [gx, gy, 255 - (gx + gy) / 2, 255 - gy];
            if inside {
                px = [250, 20, 40, 200];
            }
            if checker {
                px[0] = 255 - px[0];
                px[1] = 0;
                px[3] = if (x + y) % 7 == 0 { 0 } else { px[3] };
            }
            let px = px.map(|v| (v + n).clamp(0, 255) as u8);
            match layout {
                Layout::Gray => d.push(px[0]),
                Layout::GrayAlpha => d.extend_from_slice(&[px[0], px[3]]),
                Layout::Rgb => d.extend_from_slice(&px[..3]),
                Layout::Rgba => d.extend_from_slice(&px),
            }
        }
    }
    Pixels::new(w, h, layout, d).unwrap()
}

fn cpu(p: &Pixels, job: &GpuJob) -> Pixels {
    job.run_on_cpu(p.clone())
}

/// (max abs difference, count of differing samples).
fn diff(a: &Pixels, b: &Pixels) -> (u8, usize) {
    let mut max = 0u8;
    let mut n = 0;
    for (x, y) in a.data().iter().zip(b.data()) {
        let d = x.abs_diff(*y);
        if d > 0 {
            n += 1;
        }
        max = max.max(d);
    }
    (max, n)
}

/// Compares one job against the CPU path.
///
/// Bound: the arithmetic is the CPU's integer arithmetic, so Keep and Gray
/// must be within a max abs diff of 2 per sample (in practice 0). Bitonal
/// outputs only 0 or 255, so a one-step luma difference at the threshold
/// flips a pixel; at most 0.5% of bitonal samples may differ (in practice 0).
fn check(g: &Gpu, p: &Pixels, job: &GpuJob) {
    let want = cpu(p, job);
    let got = g.apply(p, job).unwrap_or_else(|e| panic!("{job:?} on {p:?}: {e}"));
    assert_eq!(
        (got.width(), got.height(), got.layout()),
        (want.width(), want.height(), want.layout()),
        "{job:?} on {p:?}"
    );
    let (max, n) = diff(&got, &want);
    match job.quality {
        GpuQuality::Bitonal => {
            assert!(n * 200 <= want.byte_len(), "{job:?} on {p:?}: {n} of {} bitonal samples differ", want.byte_len())
        }
        _ => assert!(max <= 2, "{job:?} on {p:?}: max diff {max} ({n} samples differ)"),
    }
}

const LAYOUTS: [Layout; 4] = [Layout::Gray, Layout::GrayAlpha, Layout::Rgb, Layout::Rgba];

#[test]
fn gpu_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Gpu>();
}

#[test]
fn coefficients_match_fast_image_resize_on_an_impulse() {
    // A single bright column resized on the CPU reproduces each output
    // column's weight; our fixed-point table must give the same bytes.
    for (src, dst) in [(40u32, 13u32), (13, 40), (100, 27), (5, 3)] {
        let filter = match resize::filter_for(src, 1, dst, 1) {
            FilterType::Lanczos3 => Filter::Lanczos3,
            _ => Filter::CatmullRom,
        };
        let c = coefficients(src, 0.0, f64::from(src), dst, filter);
        for hot in [0, src / 2, src - 1] {
            let mut d = vec![0u8; src as usize];
            d[hot as usize] = 200;
            let p = Pixels::new(src, 1, Layout::Gray, d.clone()).unwrap();
            let want = resize::resize(p, dst, 1);
            for (o, b) in c.bounds.iter().enumerate() {
                let mut acc = 1i32 << (c.precision - 1);
                for k in 0..b[1] {
                    acc += i32::from(d[(b[0] + k) as usize]) * c.values[o * c.window as usize + k as usize];
                }
                let v = (acc >> c.precision).clamp(0, 255) as u8;
                assert_eq!(v, want.data()[o], "{src}->{dst} hot {hot} out {o}");
            }
        }
    }
}

#[test]
fn resize_matches_the_cpu_for_every_layout_and_scale() {
    let Some(g) = gpu() else { return };
    let cases: [((u32, u32), (u32, u32)); 8] = [
        ((333, 217), (166, 108)), // about 2x down, odd sizes
        ((333, 217), (90, 59)),   // 3.7x down
        ((256, 192), (32, 24)),   // 8x down
        ((120, 90), (240, 180)),  // 2x up
        ((1, 1), (3, 5)),         // tiny up
        ((97, 61), (97, 30)),     // only the height changes
        ((97, 61), (40, 61)),     // only the width changes
        ((64, 48), (90, 20)),     // up in one direction, down in the other
    ];
    for (i, ((sw, sh), (ow, oh))) in cases.into_iter().enumerate() {
        for layout in LAYOUTS {
            let p = structured(sw, sh, layout, i as u32 + 1);
            let job = GpuJob::resize_to(ow, oh);
            check(g, &p, &job);
        }
    }
}

#[test]
fn mirror_and_quarter_turns_match_the_cpu_with_and_without_resize() {
    let Some(g) = gpu() else { return };
    for layout in LAYOUTS {
        let p = structured(75, 41, layout, 7);
        for (ow, oh) in [(75, 41), (30, 17)] {
            for mirror in [false, true] {
                for q in 0..4u8 {
                    let job = GpuJob {
                        out_w: ow,
                        out_h: oh,
                        mirror,
                        quarter_turns: q,
                        quality: GpuQuality::Keep,
                        crop: None,
                        arbitrary: None,
                    };
                    check(g, &p, &job);
                }
            }
        }
    }
}

#[test]
fn gray_and_bitonal_match_the_cpu_for_every_layout() {
    let Some(g) = gpu() else { return };
    for layout in LAYOUTS {
        let p = structured(151, 99, layout, 11);
        for quality in [GpuQuality::Gray, GpuQuality::Bitonal] {
            for (ow, oh, mirror, q) in [(151, 99, false, 0), (50, 33, true, 1), (300, 198, false, 3), (41, 99, true, 2)]
            {
                let job =
                    GpuJob { out_w: ow, out_h: oh, mirror, quarter_turns: q, quality, crop: None, arbitrary: None };
                check(g, &p, &job);
            }
        }
    }
}

#[test]
fn the_full_table_matches_the_cpu_on_an_odd_sized_image() {
    let Some(g) = gpu() else { return };
    for layout in LAYOUTS {
        let p = structured(37, 23, layout, 3);
        for (ow, oh) in [(37, 23), (18, 11), (10, 6), (74, 46), (3, 5)] {
            for mirror in [false, true] {
                for q in 0..4u8 {
                    for quality in [GpuQuality::Keep, GpuQuality::Gray, GpuQuality::Bitonal] {
                        check(
                            g,
                            &p,
                            &GpuJob {
                                out_w: ow,
                                out_h: oh,
                                mirror,
                                quarter_turns: q,
                                quality,
                                crop: None,
                                arbitrary: None,
                            },
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn output_is_bit_exact_on_a_photo_sized_downscale() {
    let Some(g) = gpu() else { return };
    let p = structured(1024, 768, Layout::Rgb, 5);
    let job = GpuJob::resize_to(256, 192);
    let got = g.apply(&p, &job).unwrap();
    let (max, n) = diff(&got, &cpu(&p, &job));
    assert_eq!((max, n), (0, 0), "max diff {max}, {n} samples differ");
}

/// Source size, sub-pixel crop and output size: what decodes at a reduced
/// scale hand over (the region snapped outward to whole reduced pixels).
type CropCase = ((u32, u32), resize::SrcCrop, (u32, u32));
const CROPS: [CropCase; 9] = [
    ((300, 200), (2.5, 1.25, 256.0, 180.5), (128, 90)), // down, both edges between pixels
    ((500, 400), (3.3, 7.7, 491.2, 380.9), (61, 48)),   // 8x down
    ((130, 130), (1.75, 3.5, 125.0, 120.0), (125, 120)), // same size, shifted by a fraction
    ((130, 130), (2.0, 3.5, 125.0, 120.0), (125, 120)), // only a vertical pass
    ((130, 130), (1.5, 3.0, 125.0, 120.0), (125, 120)), // only a horizontal pass
    ((130, 130), (4.0, 6.0, 100.0, 90.0), (100, 90)),   // whole pixels, same size: a copy
    ((64, 48), (10.25, 5.5, 20.0, 15.0), (80, 60)),     // enlarged
    ((257, 129), (0.0, 0.0, 257.0, 129.0), (128, 64)),  // the whole image: no crop
    ((97, 61), (0.0, 0.5, 97.0, 60.5), (40, 61)),       // down in x, up by a hair in y
];

#[test]
fn sub_pixel_source_crops_match_the_cpu_bit_for_bit_in_every_layout() {
    // A device of its own: an error another test provokes on the shared
    // device fails every job in flight there (they fall back to the CPU).
    let Some(g) = own_gpu() else { return };
    let g = &g;
    for (i, ((sw, sh), crop, (ow, oh))) in CROPS.into_iter().enumerate() {
        for layout in LAYOUTS {
            let p = structured(sw, sh, layout, 40 + i as u32);
            let job = GpuJob {
                crop: Some(crop),
                mirror: i % 2 == 1,
                quarter_turns: (i % 4) as u8,
                ..GpuJob::resize_to(ow, oh)
            };
            let got = g.apply(&p, &job).unwrap_or_else(|e| panic!("{job:?} on {p:?}: {e}"));
            let want = cpu(&p, &job);
            assert_eq!((got.width(), got.height()), (want.width(), want.height()), "{job:?}");
            let (max, n) = diff(&got, &want);
            assert_eq!((max, n), (0, 0), "{job:?} on {p:?}: max diff {max}, {n} samples differ");
        }
    }
}

#[test]
fn a_crop_uploads_only_the_rows_and_columns_its_taps_read() {
    // 2.5.. of 1000 columns down to 100: Lanczos3 at scale ~2 reads about
    // six pixels beyond each edge, not the whole width.
    let rp = resize_plan(1000, 800, Some((300.5, 200.25, 200.0, 100.0)), 100, 50).unwrap();
    let (x, y, w, h) = rp.rect;
    assert!((294..=300).contains(&x) && (206..=214).contains(&w), "{:?}", rp.rect);
    assert!((194..=200).contains(&y) && (106..=114).contains(&h), "{:?}", rp.rect);
    let hc = rp.h.unwrap();
    assert_eq!(hc.bounds.iter().map(|b| b[0]).min(), Some(0));
    assert!(hc.bounds.iter().all(|b| b[0] + b[1] <= w));
    // Whole pixels and the same size: nothing to convolve, just the crop.
    let rp = resize_plan(130, 130, Some((4.0, 6.0, 100.0, 90.0)), 100, 90).unwrap();
    assert!(rp.h.is_none() && rp.v.is_none());
    assert_eq!(rp.rect, (4, 6, 100, 90));
}

#[test]
fn a_crop_outside_the_image_is_refused_for_the_cpu_to_handle() {
    let Some(g) = gpu() else { return };
    let p = structured(100, 80, Layout::Rgb, 3);
    for crop in [(90.0, 0.0, 20.0, 10.0), (-1.0, 0.0, 20.0, 10.0), (0.0, 75.5, 10.0, 5.0)] {
        let job = GpuJob { crop: Some(crop), ..GpuJob::resize_to(10, 5) };
        assert!(matches!(g.apply(&p, &job), Err(GpuError::Unsupported(_))), "{crop:?}");
    }
}

#[test]
fn reduced_decodes_go_to_the_gpu_and_match_the_cpu() {
    use crate::model::{Format, Quality, Rotation};
    use crate::transform::{apply, apply_cpu, Backend, Ran, TransformSpec};
    let Some(g) = own_gpu() else { return };
    let backend = Backend::gpu_fixed(std::sync::Arc::new(g), 0);
    let p = structured(300, 200, Layout::Rgb, 9);
    let spec = TransformSpec {
        width: 128,
        height: 90,
        rotation: Rotation { degrees: 90.0, mirror: false },
        quality: Quality::Gray,
        format: Format::Jpg,
        src_crop: Some((2.5, 1.25, 256.0, 180.5)),
    };
    let (got, ran) = apply(p.clone(), &spec, &backend);
    assert_eq!(ran, Ran::Gpu);
    assert_eq!(got, apply_cpu(p, &spec));
}

#[test]
fn a_hundred_sequential_jobs_create_no_new_buffers_and_keep_the_pool_bounded() {
    // A device of its own, so that concurrent tests don't touch its pool.
    let Some(g) = own_gpu() else { return };
    let a = structured(200, 150, Layout::Rgb, 1);
    let b = structured(90, 60, Layout::Rgba, 2);
    let ja = GpuJob { quarter_turns: 1, ..GpuJob::resize_to(100, 75) };
    let jb = GpuJob { mirror: true, quality: GpuQuality::Gray, ..GpuJob::resize_to(45, 30) };
    // Warm up both shapes; then 100 more calls must create nothing.
    g.apply(&a, &ja).unwrap();
    g.apply(&b, &jb).unwrap();
    let warm = g.pool_stats();
    // One job holds at most 5 buffers (upload, input, 2 work, readback).
    assert!(warm.created <= 10, "{warm:?}");
    for i in 0..100 {
        let (p, j) = if i % 2 == 0 { (&a, &ja) } else { (&b, &jb) };
        g.apply(p, j).unwrap();
    }
    let after = g.pool_stats();
    assert_eq!(after.created, warm.created, "{warm:?} -> {after:?}");
    assert!(after.idle_buffers <= 10, "{after:?}");
    assert!(after.idle_bytes <= MAX_IDLE_BYTES);
    let per_class = g.pool.lock().unwrap().idle.values().map(Vec::len).max().unwrap_or(0);
    assert!(per_class <= MAX_IDLE_PER_CLASS);
}

#[test]
fn a_batch_gives_each_job_its_own_result_in_one_submission_and_a_refused_job_fails_alone() {
    // A device of its own: the pool counts below are this test's alone.
    let Some(g) = own_gpu() else { return };
    // The tiles one decoded area yields: cut from one image at several
    // sub-pixel crops and sizes, plus other layouts, turns and qualities.
    let unit = structured(512, 384, Layout::Rgb, 9);
    let gray = structured(130, 90, Layout::GrayAlpha, 10);
    let job = |out: (u32, u32), crop, quarter_turns, quality| GpuJob {
        out_w: out.0,
        out_h: out.1,
        crop,
        mirror: quarter_turns == 3,
        quarter_turns,
        quality,
        arbitrary: None,
    };
    let mut jobs: Vec<(&Pixels, GpuJob)> = Vec::new();
    for (i, (x, y)) in [(0.0, 0.0), (128.25, 0.0), (0.0, 96.5), (255.75, 191.0), (384.0, 288.0)].into_iter().enumerate()
    {
        let q = [GpuQuality::Keep, GpuQuality::Gray, GpuQuality::Bitonal][i % 3];
        jobs.push((&unit, job((64, 48), Some((x, y, 128.0, 96.0)), (i % 4) as u8, q)));
    }
    jobs.push((&unit, job((512, 384), None, 0, GpuQuality::Keep)));
    jobs.push((&gray, job((65, 45), None, 1, GpuQuality::Keep)));
    // Outside the image: refused, alone.
    jobs.push((&unit, job((10, 10), Some((500.0, 0.0, 20.0, 20.0)), 0, GpuQuality::Keep)));
    jobs.push((&gray, job((260, 180), Some((0.5, 0.5, 100.0, 80.0)), 2, GpuQuality::Gray)));
    let out = g.apply_batch(&jobs);
    assert_eq!(out.len(), jobs.len());
    for (i, ((p, j), r)) in jobs.iter().zip(&out).enumerate() {
        if i == 7 {
            assert!(matches!(r, Err(GpuError::Unsupported(_))), "{r:?}");
            continue;
        }
        let got = r.as_ref().unwrap_or_else(|e| panic!("job {i} {j:?}: {e}"));
        let alone = g.apply(p, j).unwrap();
        assert!(got == &alone, "job {i}: the batch and a job alone differ");
        let want = cpu(p, j);
        assert_eq!((got.width(), got.height(), got.layout()), (want.width(), want.height(), want.layout()));
        let (max, n) = diff(got, &want);
        match j.quality {
            GpuQuality::Bitonal => assert!(n * 200 <= want.byte_len(), "job {i}: {n} bitonal samples differ"),
            _ => assert!(max <= 2, "job {i} {j:?}: max diff {max} from the CPU"),
        }
    }
    // The same batch again finds every buffer in the pool.
    let warm = g.pool_stats();
    let again = g.apply_batch(&jobs);
    assert_eq!(g.pool_stats().created, warm.created);
    assert!(again.iter().zip(&out).all(|(a, b)| match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(_), Err(_)) => true,
        _ => false,
    }));
    assert!(g.apply_batch(&[]).is_empty());
}

fn own_gpu() -> Option<Gpu> {
    match open() {
        Ok(g) => Some(g),
        Err(GpuError::NoAdapter(e)) => {
            no_gpu(&e);
            None
        }
        Err(e) => panic!("GPU adapter found but unusable: {e}"),
    }
}

#[test]
fn bands_cover_every_output_row_within_the_binding_limit() {
    let c = coefficients(1000, 0.0, 1000.0, 125, Filter::Lanczos3);
    let stride = 999u64 * 3;
    let len = round_up(stride * 1000, 4).unwrap();
    for max_bind in [160 * 1024u64, 400 * 1024, 1 << 30] {
        let bands = v_bands(&c, stride, 0, len, max_bind, 256, 1 << 20).unwrap();
        let mut next = 0;
        for b in &bands {
            assert_eq!(b.row0, next);
            assert!(b.len <= max_bind && b.offset % 256 == 0 && b.offset + b.len <= len, "{b:?}");
            for y in b.row0..b.row0 + b.rows {
                let [start, n] = c.bounds[y as usize];
                assert!(u64::from(start) * stride >= b.offset);
                assert!(((u64::from(start + n) * stride).min(len)) <= b.offset + b.len);
            }
            next = b.row0 + b.rows;
        }
        assert_eq!(next, 125);
        if max_bind == 1 << 30 {
            assert_eq!(bands.len(), 1);
        } else {
            assert!(bands.len() > 1);
        }
    }
    // A single row that cannot fit is refused.
    assert!(matches!(v_bands(&c, stride, 0, len, 64 * 1024, 256, 1 << 20), Err(GpuError::Unsupported(_))));
}

#[test]
fn an_input_beyond_the_binding_limit_is_resized_in_bands_and_still_matches() {
    let Some(mut g) = own_gpu() else { return };
    // Pretend the adapter binds at most 64 KiB: the input (~190 KB) then
    // needs several bands.
    g.limits.max_storage_buffer_binding_size = 64 * 1024;
    for layout in [Layout::Rgb, Layout::GrayAlpha, Layout::Rgba] {
        let p = structured(301, 211, layout, 9);
        for (ow, oh) in [(75, 52), (100, 50)] {
            let job = GpuJob { mirror: true, quarter_turns: 1, ..GpuJob::resize_to(ow, oh) };
            check(&g, &p, &job);
        }
        // Without a vertical pass the input must be bound whole: refused.
        if p.byte_len() > 64 * 1024 {
            let job = GpuJob::resize_to(150, 211);
            assert!(matches!(g.apply(&p, &job), Err(GpuError::Unsupported(_))));
        }
    }
}

#[test]
fn a_destroyed_device_makes_apply_fail_without_panicking() {
    let Some(g) = own_gpu() else { return };
    let p = structured(64, 48, Layout::Rgb, 4);
    let job = GpuJob::resize_to(32, 24);
    assert!(g.apply(&p, &job).is_ok());
    g.device.destroy();
    assert!(g.apply(&p, &job).is_err());
    assert!(g.apply(&p, &job).is_err());
}

#[test]
fn trim_pool_releases_idle_buffers() {
    let Some(g) = own_gpu() else { return };
    let p = structured(64, 48, Layout::Rgba, 4);
    let job = GpuJob::resize_to(32, 24);
    g.apply(&p, &job).unwrap();
    assert!(g.pool_stats().idle_buffers > 0);
    g.trim_pool();
    assert_eq!((g.pool_stats().idle_buffers, g.pool_stats().idle_bytes), (0, 0));
    assert!(g.apply(&p, &job).is_ok());
}

#[test]
fn jobs_beyond_the_adapter_limits_are_refused_not_attempted() {
    let Some(g) = gpu() else { return };
    let p = Pixels::filled(4, 4, Layout::Rgb, &[1, 2, 3]);
    let wide = g.limits.max_compute_workgroups_per_dimension.saturating_mul(RESIZE_WG).saturating_add(RESIZE_WG);
    let job = GpuJob::resize_to(wide, 1);
    assert!(matches!(g.apply(&p, &job), Err(GpuError::Unsupported(_))));
    let job = GpuJob::resize_to(0, 4);
    assert!(matches!(g.apply(&p, &job), Err(GpuError::Unsupported(_))));
}

#[test]
fn concurrent_jobs_from_several_threads_all_match_the_cpu() {
    let Some(g) = gpu() else { return };
    std::thread::scope(|s| {
        for t in 0..4u32 {
            s.spawn(move || {
                let layout = LAYOUTS[t as usize];
                let p = structured(120 + t, 80 + t, layout, t);
                for q in 0..4u8 {
                    let job = GpuJob { mirror: q % 2 == 1, quarter_turns: q, ..GpuJob::resize_to(50 + t, 33) };
                    check(g, &p, &job);
                }
            });
        }
    });
}

#[test]
fn a_device_error_outside_a_job_fails_no_job_running_meanwhile() {
    // A device of its own: the errors below must not reach other tests.
    let Some(g) = own_gpu() else { return };
    let p = structured(300, 200, Layout::Rgb, 5);
    let job = GpuJob { quarter_turns: 1, ..GpuJob::resize_to(150, 100) };
    let stop = std::sync::atomic::AtomicBool::new(false);
    /// Stops the error thread however the checks end (a failed assertion
    /// must not leave the scope waiting on it).
    struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        // Another thread, in no job's scopes, keeps making invalid buffers
        // (mapped for reading and writing at once): uncaptured errors.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let _ = g.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("invalid on purpose"),
                    size: 16,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::MAP_WRITE,
                    mapped_at_creation: false,
                });
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        });
        let stopping = Stop(&stop);
        let before = g.uncaptured_errors();
        for i in 0..20 {
            let out = g.apply(&p, &job);
            assert!(out.is_ok(), "job {i}: {out:?}");
            check(&g, &p, &job);
        }
        let batch = g.apply_batch(&[(&p, job), (&p, job), (&p, job)]);
        assert!(batch.iter().all(|r| r.is_ok()), "{batch:?}");
        drop(stopping);
        assert!(g.uncaptured_errors() > before, "the errors were raised, outside the jobs");
    });
}

#[test]
fn adapter_description_names_the_backend() {
    let Some(g) = gpu() else { return };
    let d = g.adapter_description();
    assert!(!d.is_empty());
    assert!(d.contains(&format!("{:?}", g.info.backend)), "{d}");
}

#[test]
fn a_measured_crossover_sends_a_job_to_the_gpu_only_where_it_was_faster() {
    use crate::transform::crossover::{self, JobKind, Origin, NEVER};
    use crate::transform::{apply, Backend, MinPixels, Ran, TransformSpec};
    use std::time::{Duration, Instant};
    let Some(g) = own_gpu() else { return };
    // Which path wins is timing (on lavapipe the CPU, by 15-50x in an
    // optimised build): what must hold is that the crossover is the
    // smallest size from which the GPU won at every larger size measured.
    let series = crossover::measure(&g, JobKind::Resize, crossover::SERIES_BUDGET);
    eprintln!("{}: {}", g.adapter_description(), series.summary());
    assert!(!series.samples.is_empty(), "{series:?}");
    let min = series.crossover();
    for s in &series.samples {
        let wins = s.gpu.as_secs_f64() <= s.cpu.as_secs_f64() * 0.9;
        if min != NEVER && s.pixels >= min {
            assert!(wins, "a size at or above the crossover where the GPU lost: {}", series.summary());
        }
    }
    if let Some(largest) = series.samples.iter().max_by_key(|s| s.pixels) {
        let wins = largest.gpu.as_secs_f64() <= largest.cpu.as_secs_f64() * 0.9;
        assert_eq!(min == NEVER, !wins || series.failed, "{}", series.summary());
    }

    // The backend as the server builds it: every job on the CPU while it
    // measures, then by the crossover it found.
    let backend = Backend::choose("gpu", MinPixels::Measure, 0);
    let Some(c) = backend.crossover() else { panic!("no GPU backend on an adapter that works") };
    let p = structured(1024, 768, Layout::Rgb, 3);
    let spec = TransformSpec {
        width: 512,
        height: 384,
        rotation: crate::model::Rotation { degrees: 0.0, mirror: false },
        quality: crate::model::Quality::Default,
        format: crate::model::Format::Jpg,
        src_crop: None,
    };
    let waited = Instant::now();
    while c.origin() == Origin::Measuring {
        assert!(waited.elapsed() < Duration::from_secs(120), "the measurement did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.origin(), Origin::Measured);
    if let Backend::Gpu { gpu, .. } = &backend {
        assert_eq!(gpu.pool_stats().idle_bytes, 0, "the measurement's buffers were given back");
    }
    let expect = if c.takes(JobKind::Resize, 1024 * 768) { Ran::Gpu } else { Ran::Cpu };
    assert_eq!(apply(p, &spec, &backend).1, expect);
}

/// `got` against `want` with [`check`]'s bounds.
fn assert_close(got: &Pixels, want: &Pixels, what: &str, quality: GpuQuality) {
    assert_eq!((got.width(), got.height(), got.layout()), (want.width(), want.height(), want.layout()), "{what}");
    let (max, n) = diff(got, want);
    match quality {
        GpuQuality::Bitonal => assert!(n * 200 <= want.byte_len(), "{what}: {n} bitonal samples differ"),
        _ => assert!(max <= 2, "{what}: max diff {max} ({n} samples differ)"),
    }
}

/// Jobs on rectangles of a `w × h` unit: unaligned corners, a sub-pixel
/// crop of a reduced decode, a copy with a turn and gray, mirror and
/// bitonal, an upscale at the far corner, the whole unit.
fn rect_jobs(w: u32, h: u32) -> Vec<(Rect4, GpuJob)> {
    let job = |out_w, out_h, crop, mirror, quarter_turns, quality| GpuJob {
        out_w,
        out_h,
        crop,
        mirror,
        quarter_turns,
        quality,
        arbitrary: None,
    };
    vec![
        ((7, 3, 101, 97), job(50, 48, None, false, 0, GpuQuality::Keep)),
        ((33, 20, 200, 150), job(90, 65, Some((2.5, 1.25, 180.0, 130.5)), false, 0, GpuQuality::Keep)),
        ((1, 1, 64, 64), job(64, 64, None, false, 1, GpuQuality::Gray)),
        ((5, 9, 120, 80), job(60, 40, None, true, 2, GpuQuality::Bitonal)),
        ((w - 50, h - 40, 50, 40), job(80, 60, None, false, 3, GpuQuality::Keep)),
        ((0, 0, w, h), job(w / 3, h / 3, None, false, 0, GpuQuality::Keep)),
    ]
}

fn check_in(g: &Gpu, unit: &Arc<Pixels>, jobs: &[(Rect4, GpuJob)]) {
    let got = g.apply_in(unit, jobs);
    assert_eq!(got.len(), jobs.len());
    for (((x, y, w, h), job), got) in jobs.iter().zip(got) {
        let what = format!("{job:?} on ({x}, {y}, {w}, {h}) of {unit:?}");
        let got = got.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_close(&got, &job.run_on_cpu(unit.crop(*x, *y, *w, *h)), &what, job.quality);
    }
}

#[test]
fn jobs_on_rectangles_of_a_resident_unit_match_the_cpu_and_upload_it_once() {
    let Some(mut g) = own_gpu() else { return };
    g.resident_max = 64 << 20;
    for (i, layout) in LAYOUTS.into_iter().enumerate() {
        let unit = Arc::new(structured(333, 217, layout, 20 + i as u32));
        let jobs = rect_jobs(333, 217);
        let before = g.resident_stats();
        check_in(&g, &unit, &jobs);
        let first = g.resident_stats();
        assert_eq!((first.units, first.uploads), (1, before.uploads + 1), "{layout:?}: uploaded once");
        // The same unit again: read where it is, nothing uploaded.
        check_in(&g, &unit, &jobs);
        let again = g.resident_stats();
        assert_eq!(again.uploads, first.uploads, "{layout:?}: not uploaded twice");
        assert_eq!(again.hits, first.hits + jobs.len() as u64, "{layout:?}");
        // A rectangle outside the unit fails alone.
        let mut bad = jobs.clone();
        bad.push(((300, 200, 40, 40), bad[0].1));
        let out = g.apply_in(&unit, &bad);
        assert!(out[..jobs.len()].iter().all(Result::is_ok), "{layout:?}");
        assert!(matches!(out[jobs.len()], Err(GpuError::Unsupported(_))), "{layout:?}");
        drop(unit);
        let gone = g.resident_stats();
        assert_eq!((gone.units, gone.bytes), (0, 0), "{layout:?}: its pixels gone, the unit left the device");
    }
}

#[test]
fn resident_units_stay_within_their_bound_least_recently_used_leaving_first() {
    let Some(mut g) = own_gpu() else { return };
    let make = |seed| Arc::new(structured(333, 217, Layout::Rgb, seed));
    let bytes = round_up(333 * 217 * 3, 4).unwrap();
    g.resident_max = 2 * bytes;
    let jobs = rect_jobs(333, 217);
    let (a, b, c) = (make(1), make(2), make(3));
    check_in(&g, &a, &jobs);
    check_in(&g, &b, &jobs);
    check_in(&g, &a, &jobs); // a is now the most recently used
    check_in(&g, &c, &jobs); // room for c: b leaves
    let s = g.resident_stats();
    assert_eq!((s.units, s.bytes, s.uploads, s.evictions), (2, 2 * bytes, 3, 1), "{s:?}");
    check_in(&g, &a, &jobs);
    assert_eq!(g.resident_stats().uploads, 3, "a stayed");
    check_in(&g, &b, &jobs);
    let s = g.resident_stats();
    assert_eq!((s.units, s.uploads, s.evictions), (2, 4, 2), "b came back in c's place: {s:?}");
    assert!(s.bytes <= s.max_bytes);
    // A unit larger than the bound is never kept, and still transformed.
    let big = Arc::new(structured(480, 360, Layout::Rgb, 4));
    check_in(&g, &big, &rect_jobs(480, 360));
    let s = g.resident_stats();
    assert_eq!((s.units, s.uploads), (2, 4), "{s:?}");
    drop((a, b, c));
    let s = g.resident_stats();
    assert_eq!((s.units, s.bytes), (0, 0), "units gone, device memory given back: {s:?}");
}

#[test]
fn a_resident_unit_beyond_the_binding_limit_is_read_in_bands_from_any_corner() {
    let Some(mut g) = own_gpu() else { return };
    g.resident_max = 64 << 20;
    // Pretend the adapter binds at most 64 KiB: the unit (~190 KB of RGB)
    // is bound a band of rows at a time, from offsets that do not fall on
    // the binding alignment.
    g.limits.max_storage_buffer_binding_size = 64 * 1024;
    for layout in [Layout::Rgb, Layout::Rgba] {
        let unit = Arc::new(structured(301, 211, layout, 9));
        let job = GpuJob { mirror: true, quarter_turns: 1, ..GpuJob::resize_to(70, 52) };
        check_in(&g, &unit, &[((13, 7, 281, 199), job), ((1, 3, 299, 207), job)]);
    }
}

#[test]
fn the_backend_transforms_rectangles_of_a_unit_as_the_cpu_cuts_them() {
    use crate::model::{Format, Quality, Rotation};
    use crate::transform::{apply_in, Backend, OutsideUnit, Ran, TransformSpec};
    let Some(mut g) = own_gpu() else { return };
    g.resident_max = 64 << 20;
    let gpu = Backend::gpu_fixed(Arc::new(g), 0);
    let unit = Arc::new(structured(300, 200, Layout::Rgb, 5));
    let spec = |width, height, degrees, src_crop| TransformSpec {
        width,
        height,
        rotation: Rotation { degrees, mirror: false },
        quality: Quality::Default,
        format: Format::Jpg,
        src_crop,
    };
    let items = [
        ((10, 20, 128, 128), spec(64, 64, 0.0, None)),
        ((0, 0, 300, 200), spec(150, 100, 90.0, Some((1.5, 0.5, 290.0, 198.0)))),
        // Any angle.
        ((50, 50, 100, 100), spec(100, 100, 30.0, None)),
    ];
    let on_gpu = apply_in(&unit, &items, &gpu).expect("inside");
    let on_cpu = apply_in(&unit, &items, &Backend::Cpu).expect("inside");
    let ran: Vec<Ran> = on_gpu.iter().map(|(_, r)| *r).collect();
    assert_eq!(ran, vec![Ran::Gpu, Ran::Gpu, Ran::Gpu]);
    for ((g, _), (c, ran)) in on_gpu.iter().zip(&on_cpu) {
        assert_eq!(*ran, Ran::Cpu);
        assert_close(g, c, "backend apply_in", GpuQuality::Keep);
    }
    for (((x, y, w, h), s), (c, _)) in items.iter().zip(&on_cpu) {
        assert_eq!(*c, crate::transform::apply_cpu(unit.crop(*x, *y, *w, *h), s));
    }
    let outside = [((250, 150, 51, 10), spec(10, 10, 0.0, None))];
    assert_eq!(apply_in(&unit, &outside, &gpu).err(), Some(OutsideUnit));
    assert_eq!(apply_in(&unit, &outside, &Backend::Cpu).err(), Some(OutsideUnit));
}

#[test]
fn a_lone_small_region_does_not_upload_its_unit_but_reads_it_once_resident() {
    let Some(mut g) = own_gpu() else { return };
    g.resident_max = 64 << 20;
    let unit = Arc::new(structured(333, 217, Layout::Rgb, 8));
    let small = rect_jobs(333, 217)[..1].to_vec();
    check_in(&g, &unit, &small);
    let s = g.resident_stats();
    assert_eq!((s.uploads, s.units), (0, 0), "a tenth of the unit: its part uploaded, not the unit");
    // A batch reading most of it uploads it; then the lone region is a hit.
    check_in(&g, &unit, &rect_jobs(333, 217));
    assert_eq!(g.resident_stats().uploads, 1);
    let hits = g.resident_stats().hits;
    check_in(&g, &unit, &small);
    let s = g.resident_stats();
    assert_eq!((s.uploads, s.hits), (1, hits + 1), "{s:?}");
}

/// Pixels of `got` and `want` (same size and layout) that differ by more
/// than 2 in some sample, leaving aside the colour of pixels transparent
/// (alpha ≤ 1) on both sides, which no one sees.
fn visible_differences(got: &Pixels, want: &Pixels) -> usize {
    let c = want.layout().channels();
    let alpha = want.layout().has_alpha();
    got.data()
        .chunks_exact(c)
        .zip(want.data().chunks_exact(c))
        .filter(|(g, w)| {
            let clear = alpha && g[c - 1] <= 1 && w[c - 1] <= 1;
            let colours = if clear { c - 1..c } else { 0..c };
            colours.into_iter().any(|i| g[i].abs_diff(w[i]) > 2)
        })
        .count()
}

#[test]
fn rotation_by_any_angle_matches_the_cpu_but_for_edge_pixels_the_taps_barely_cover() {
    let Some(g) = gpu() else { return };
    let mut worst = 0.0f64;
    for (i, layout) in LAYOUTS.into_iter().enumerate() {
        let p = structured(181, 123, layout, 40 + i as u32);
        for degrees in [30.0, 45.0, 137.5, 271.3, 359.9] {
            for transparent in [false, true] {
                for (mirror, quality, out) in [
                    (false, GpuQuality::Keep, (181, 123)),
                    (true, GpuQuality::Gray, (90, 61)),
                    (false, GpuQuality::Keep, (250, 170)),
                ] {
                    let job = GpuJob {
                        out_w: out.0,
                        out_h: out.1,
                        crop: None,
                        mirror,
                        quarter_turns: 0,
                        quality,
                        arbitrary: Some(Arbitrary { degrees, transparent }),
                    };
                    let want = cpu(&p, &job);
                    let got = g.apply(&p, &job).unwrap_or_else(|e| panic!("{job:?}: {e}"));
                    assert_eq!(
                        (got.width(), got.height(), got.layout()),
                        (want.width(), want.height(), want.layout()),
                        "{job:?} on {layout:?}"
                    );
                    let n = visible_differences(&got, &want);
                    let share = n as f64 / f64::from(want.width() * want.height());
                    worst = worst.max(share);
                    // The image's edge is about 2 (w + h) of the output's
                    // pixels; at most a tenth of those may fall on the
                    // other side of the coverage threshold.
                    let edge = 2 * (out.0 + out.1) as usize;
                    assert!(n * 10 <= edge, "{job:?} on {layout:?}: {n} pixels differ (edge {edge})");
                }
            }
        }
    }
    eprintln!("rotation: worst share of visibly different pixels {worst:.5}");
}
