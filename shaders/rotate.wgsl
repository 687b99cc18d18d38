// Tessera GPU transform: rotation by an arbitrary angle (common.wgsl is
// prepended), as rotate.rs `arbitrary` does it: clockwise, into the bounding
// box of the rotated image (dst_w x dst_h), each output pixel centre turned
// back into the source and sampled bilinearly over the taps that fall inside
// the image, colours weighted by alpha; what the taps do not cover is the
// background: transparent (FLAG_TRANSPARENT) or composited over white.
//
// The source is the resized image (src_w x src_h: packed RGBA words from
// resize_h, or raw rows), mirrored first when FLAG_MIRROR is set (IIIF
// applies `!` before the rotation). The output is one packed RGBA word per
// pixel, which orient_quality then converts and packs.
//
// rotate.rs works in f64; this pass works in f32, so a sample may round the
// other way (one level), and a pixel at the very edge of the image, whose
// taps cover next to nothing, may fall on the other side of the background
// threshold: it is then fully transparent on one path and nearly so on the
// other.

@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

// Set with a transparent background (output with alpha).
const FLAG_TRANSPARENT: u32 = 16u;

// Params: cos and sin of the angle as f32 bits in `shift` and `window`.
fn angle_cos() -> f32 {
    return bitcast<f32>(params.shift);
}

fn angle_sin() -> f32 {
    return bitcast<f32>(params.window);
}

fn round_half_up(v: f32) -> u32 {
    return u32(clamp(floor(v + 0.5), 0.0, 255.0));
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox = gid.x;
    let oy = gid.y;
    if (ox >= params.dst_w || oy >= params.dst_h) {
        return;
    }
    let w = f32(params.src_w);
    let h = f32(params.src_h);
    let co = angle_cos();
    let s = angle_sin();
    let dx = f32(ox) + 0.5 - f32(params.dst_w) / 2.0;
    let dy = f32(oy) + 0.5 - f32(params.dst_h) / 2.0;
    let sx = dx * co + dy * s + w / 2.0 - 0.5;
    let sy = -dx * s + dy * co + h / 2.0 - 0.5;
    let fx0 = floor(sx);
    let fy0 = floor(sy);
    let fx = sx - fx0;
    let fy = sy - fy0;
    let x0 = i32(fx0);
    let y0 = i32(fy0);
    let transparent = (params.flags & FLAG_TRANSPARENT) != 0u;
    let weights = array<f32, 4>((1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy);
    let tx = array<i32, 4>(x0, x0 + 1, x0, x0 + 1);
    let ty = array<i32, 4>(y0, y0, y0 + 1, y0 + 1);
    var cover = 0.0;
    var alpha = 0.0;
    var acc = vec3<f32>(0.0);
    for (var t = 0u; t < 4u; t = t + 1u) {
        let x = tx[t];
        let y = ty[t];
        if (x < 0 || y < 0 || x >= i32(params.src_w) || y >= i32(params.src_h)) {
            continue;
        }
        cover = cover + weights[t];
        var px = u32(x);
        if ((params.flags & FLAG_MIRROR) != 0u) {
            px = params.src_w - 1u - px;
        }
        let p = vec4<f32>(load_pixel(px, u32(y)));
        let a = p.w * weights[t];
        alpha = alpha + a;
        acc = acc + p.xyz * a;
    }
    var out = vec4<u32>(255u);
    if (transparent) {
        out = vec4<u32>(0u);
    }
    if (cover > 1e-6) {
        var v = vec3<f32>(0.0);
        if (alpha > 0.0) {
            v = acc / alpha;
        }
        if (transparent) {
            out = vec4<u32>(round_half_up(v.x), round_half_up(v.y), round_half_up(v.z), round_half_up(alpha));
        } else {
            let k = alpha / 255.0;
            let c = v * k + vec3<f32>(255.0) * (1.0 - k);
            out = vec4<u32>(round_half_up(c.x), round_half_up(c.y), round_half_up(c.z), 255u);
        }
    }
    dst[oy * params.dst_w + ox] = pack_rgba(out);
}
