// Tessera GPU transform: horizontal convolution pass (common.wgsl is prepended).
//
// dst[y][x] = clip(sum_k coeffs[x * window + k] * src[y][bounds[x].x + k]).
// The height does not change (src_h == dst_h). Reads raw interleaved rows (the
// input, or resize_v's output); writes one packed RGBA word per pixel.

// (first source column, number of taps) per output column.
@group(0) @binding(2) var<storage, read> bounds: array<vec2<u32>>;
// i16 fixed-point coefficients widened to i32, `window` per output column.
@group(0) @binding(3) var<storage, read> coeffs: array<i32>;
// Packed RGBA, dst_w * dst_h words.
@group(0) @binding(4) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    if (x >= params.dst_w || y >= params.dst_h) {
        return;
    }
    let b = bounds[x];
    let base = x * params.window;
    var acc = initial_acc();
    for (var k = 0u; k < b.y; k = k + 1u) {
        acc = acc + load_for_resize(b.x + k, y) * coeffs[base + k];
    }
    dst[y * params.dst_w + x] = finish_sample(acc);
}
