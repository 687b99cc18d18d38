// Tessera GPU transform: vertical convolution pass (common.wgsl is prepended).
//
// dst[y][x] = clip(sum_k coeffs[y * window + k] * src[bounds[y].x + k][x]).
// The width does not change (src_w == dst_w). Runs first when both passes are
// needed, as fast_image_resize does for u8 images.

// (first source row, number of taps) per output row.
@group(0) @binding(2) var<storage, read> bounds: array<vec2<u32>>;
// i16 fixed-point coefficients widened to i32, `window` per output row.
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
    let b = bounds[y];
    let base = y * params.window;
    var acc = initial_acc();
    var p = b.x * params.src_w + x;
    for (var k = 0u; k < b.y; k = k + 1u) {
        acc = acc + load_for_resize(p) * coeffs[base + k];
        p = p + params.src_w;
    }
    dst[y * params.dst_w + x] = finish_sample(acc);
}
