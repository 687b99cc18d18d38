// Tessera GPU transform: mirror, clockwise quarter turns, quality conversion and
// packing into the output layout, in one pass (common.wgsl is prepended).
//
// The source is the resized image (src_w x src_h): packed RGBA words from
// resize_h, or raw rows (resize_v's output, or the input when no resize ran).
// Each invocation writes four output pixels, i.e. out_channels whole u32
// words, so no two invocations share a word (and there is one integer
// division per invocation, not one per byte).
// Order as in transform::apply_cpu: mirror, then rotate, then quality.

// Output bytes, little-endian words.
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

// Rec. 601 luma as quality.rs `luma` (weights sum to 65536).
fn luma(p: vec4<u32>) -> u32 {
    return (19595u * p.x + 38470u * p.y + 7471u * p.z + 32768u) >> 16u;
}

// Source pixel for the output pixel at (x, y) of the rotated image.
fn source_xy(x: u32, y: u32) -> vec2<u32> {
    let w = params.src_w;
    let h = params.src_h;
    let q = params.quarter_turns & 3u;
    // rotate.rs `quarter`: the source pixel that lands at (x, y).
    var sx = x;
    var sy = y;
    if (q == 1u) {
        sx = y;
        sy = h - 1u - x;
    } else if (q == 2u) {
        sx = w - 1u - x;
        sy = h - 1u - y;
    } else if (q == 3u) {
        sx = w - 1u - y;
        sy = x;
    }
    // rotate.rs `mirror` ran before the turn.
    if ((params.flags & FLAG_MIRROR) != 0u) {
        sx = w - 1u - sx;
    }
    return vec2<u32>(sx, sy);
}

// Sample `ch` of an output pixel whose source RGBA is `p`.
fn out_sample(p: vec4<u32>, ch: u32) -> u32 {
    if ((params.flags & FLAG_GRAY_OUT) != 0u) {
        if (ch == 1u) {
            return p.w;
        }
        // luma(g, g, g) == g, so a gray source passes through unchanged.
        let l = luma(p);
        if (params.quality == QUALITY_BITONAL) {
            return select(0u, 255u, l >= 128u);
        }
        return l;
    }
    return p[ch];
}

// Each invocation writes four consecutive output pixels (row-major in the
// rotated image): 4 * out_channels bytes, i.e. exactly out_channels words.
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let group = gid.y * (nwg.x * 256u) + gid.x;
    let oc = params.out_channels;
    let first_word = group * oc;
    let words = (params.out_bytes + 3u) / 4u;
    if (first_word >= words) {
        return;
    }
    var ow = params.src_w;
    if ((params.quarter_turns & 1u) == 1u) {
        ow = params.src_h;
    }
    let pixels = params.out_bytes / oc;
    let o = group * 4u;
    var x = o % ow;
    var y = o / ow;
    var acc = array<u32, 4>(0u, 0u, 0u, 0u);
    var pos = 0u;
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (o + j >= pixels) {
            break;
        }
        let s = source_xy(x, y);
        let px = load_pixel(s.x, s.y);
        for (var ch = 0u; ch < oc; ch = ch + 1u) {
            acc[pos >> 2u] = acc[pos >> 2u] | (out_sample(px, ch) << ((pos & 3u) * 8u));
            pos = pos + 1u;
        }
        x = x + 1u;
        if (x == ow) {
            x = 0u;
            y = y + 1u;
        }
    }
    for (var k = 0u; k < oc; k = k + 1u) {
        if (first_word + k < words) {
            dst[first_word + k] = acc[k];
        }
    }
}
