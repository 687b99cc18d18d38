// Tessera GPU transform: vertical convolution pass (common.wgsl is prepended).
//
// The vertical convolution treats every byte of a row alike (for alpha layouts
// the premultiply is per pixel, and a word holds whole pixels), so this pass
// works on raw interleaved rows four bytes at a time:
//   dst_row[y][j] = clip(sum_k coeffs[y * window + k] * src_row[bounds[y].x + k][j])
// for each of the four bytes of word j. Source rows are `src_stride` bytes
// (any alignment); output rows are `dst_stride` bytes (a multiple of 4, the
// tail bytes are padding). Runs first when both passes are needed, as
// fast_image_resize does for u8 images. An input larger than the adapter's
// storage binding limit is processed in bands of output rows (row0..dst_h),
// each binding only the input rows it needs (starting at byte src_base).

// (first source row, number of taps) per output row.
@group(0) @binding(2) var<storage, read> bounds: array<vec2<u32>>;
// i16 fixed-point coefficients widened to i32, `window` per output row.
@group(0) @binding(3) var<storage, read> coeffs: array<i32>;
// Raw rows, dst_stride bytes each.
@group(0) @binding(4) var<storage, read_write> dst: array<u32>;

// The four source bytes starting at byte `off` (which need not be aligned).
fn load_word(off: u32) -> vec4<u32> {
    let i = off >> 2u;
    let sh = (off & 3u) * 8u;
    var v = src[i];
    if (sh != 0u) {
        v = (v >> sh) | (src[i + 1u] << (32u - sh));
    }
    return unpack_rgba(v);
}

fn mul_div_255_1(a: u32, b: u32) -> u32 {
    let t = a * b + 128u;
    return ((t >> 8u) + t) >> 8u;
}

// Premultiplies the pixels in one word: one RGBA pixel, or two gray+alpha pixels.
// Rows start on a pixel boundary and words are taken at multiples of 4 bytes
// from it, so a word never splits a pixel.
fn premultiply_word(p: vec4<u32>) -> vec4<u32> {
    if (params.src_channels == 4u) {
        return premultiply(p);
    }
    return vec4<u32>(mul_div_255_1(p.x, p.y), p.y, mul_div_255_1(p.z, p.w), p.w);
}

fn unpremultiply_word(p: vec4<u32>) -> vec4<u32> {
    if (params.src_channels == 4u) {
        return unpremultiply(p);
    }
    let a = unpremultiply(vec4<u32>(p.x, p.x, p.x, p.y));
    let b = unpremultiply(vec4<u32>(p.z, p.z, p.z, p.w));
    return vec4<u32>(a.x, p.y, b.x, p.w);
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let y = gid.y + params.row0;
    let row_words = params.dst_stride >> 2u;
    if (j >= row_words || y >= params.dst_h) {
        return;
    }
    let b = bounds[y];
    let base = y * params.window;
    let premul = (params.flags & FLAG_PREMULTIPLY) != 0u;
    var acc = initial_acc();
    var off = b.x * params.src_stride + j * 4u - params.src_base;
    for (var k = 0u; k < b.y; k = k + 1u) {
        var w = load_word(off);
        if (premul) {
            w = premultiply_word(w);
        }
        acc = acc + vec4<i32>(w) * coeffs[base + k];
        off = off + params.src_stride;
    }
    let shifted = acc >> vec4<u32>(params.shift);
    var px = vec4<u32>(clamp(shifted, vec4<i32>(0), vec4<i32>(255)));
    if ((params.flags & FLAG_UNPREMULTIPLY) != 0u) {
        px = unpremultiply_word(px);
    }
    dst[y * row_words + j] = pack_rgba(px);
}
