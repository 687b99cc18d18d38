// Tessera GPU transform: mirror, clockwise quarter turns, quality conversion and
// packing into the output layout, in one pass (common.wgsl is prepended).
//
// The source is the resized image (src_w x src_h), either packed RGBA words or,
// when no resize ran, the raw input bytes. Each invocation writes one u32 word,
// i.e. four output bytes, so no two invocations touch the same word.
// Order as in transform::apply_cpu: mirror, then rotate, then quality.

// Output bytes, little-endian words.
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

// Rec. 601 luma as quality.rs `luma` (weights sum to 65536).
fn luma(p: vec4<u32>) -> u32 {
    return (19595u * p.x + 38470u * p.y + 7471u * p.z + 32768u) >> 16u;
}

// Source pixel index for output pixel `o` (row-major in the rotated image).
fn source_index(o: u32) -> u32 {
    let w = params.src_w;
    let h = params.src_h;
    let q = params.quarter_turns & 3u;
    var ow = w;
    if ((q & 1u) == 1u) {
        ow = h;
    }
    let x = o % ow;
    let y = o / ow;
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
    return sy * w + sx;
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

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let word = gid.y * (nwg.x * 256u) + gid.x;
    let first = word * 4u;
    if (first >= params.out_bytes) {
        return;
    }
    let oc = params.out_channels;
    var out = 0u;
    var cached = 0xffffffffu;
    var px = vec4<u32>(0u);
    for (var k = 0u; k < 4u; k = k + 1u) {
        let b = first + k;
        if (b >= params.out_bytes) {
            break;
        }
        let o = b / oc;
        if (o != cached) {
            cached = o;
            px = load_pixel(source_index(o));
        }
        out = out | (out_sample(px, b % oc) << (8u * k));
    }
    dst[word] = out;
}
