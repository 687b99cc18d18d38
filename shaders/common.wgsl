// Tessera GPU transform: declarations shared by every pass.
//
// This file is prepended to resize_v.wgsl, resize_h.wgsl and orient_quality.wgsl
// when their pipelines are created (WGSL has no #include). All arithmetic is
// integer and mirrors the CPU path bit for bit:
//   * fast_image_resize 6.1 convolution on u8 pixels: i16 fixed-point
//     coefficients (precision `shift`), an i32 accumulator started at 1 << (shift - 1),
//     an arithmetic shift by `shift` and a clamp to 0..=255 after each pass;
//   * its alpha handling: premultiply with mul_div_255 before the convolution,
//     divide with the RECIP_ALPHA table (8-bit precision) after it;
//   * quality.rs: Rec. 601 luma in 16-bit fixed point, bitonal threshold 128.

struct Params {
    // Width and height of the image read by this pass.
    src_w: u32,
    src_h: u32,
    // Width and height of the image written by this pass (resize passes) or
    // of the resized image before rotation (orient_quality).
    dst_w: u32,
    dst_h: u32,
    // 1..=4: `src` holds raw interleaved bytes with this many samples per pixel
    // (Gray, GrayAlpha, Rgb, Rgba). 0: `src` holds one packed RGBA word per pixel.
    src_channels: u32,
    // FLAG_* bits.
    flags: u32,
    // Fixed-point bits of the resize coefficients.
    shift: u32,
    // Coefficients stored per output sample (the stride of `coeffs`).
    window: u32,
    // Clockwise quarter turns, 0..=3 (orient_quality).
    quarter_turns: u32,
    // QUALITY_* (orient_quality).
    quality: u32,
    // Samples per output pixel, 1..=4 (orient_quality).
    out_channels: u32,
    // Bytes of output (orient_quality); the last word may be partly used.
    out_bytes: u32,
    // Bytes per row of a raw (src_channels > 0) source.
    src_stride: u32,
    // Bytes per row written by resize_v (a multiple of 4).
    dst_stride: u32,
    // Raw sources: the bound `src` range's start minus the input's first
    // byte (wrapping u32 arithmetic: it is "negative" when the binding starts
    // at the alignment boundary before the input, as inside a resident unit;
    // positive for resize_v's bands of rows of a large input).
    src_base: u32,
    // resize_v: first output row of this band (rows row0..dst_h).
    row0: u32,
}

// Premultiply colour by alpha when reading the source (resize, alpha layouts).
const FLAG_PREMULTIPLY: u32 = 1u;
// Divide colour by alpha when writing the result (last resize pass).
const FLAG_UNPREMULTIPLY: u32 = 2u;
// Flip left-right before the quarter turns (orient_quality).
const FLAG_MIRROR: u32 = 4u;
// The output layout is Gray or GrayAlpha (orient_quality).
const FLAG_GRAY_OUT: u32 = 8u;

const QUALITY_KEEP: u32 = 0u;
const QUALITY_GRAY: u32 = 1u;
const QUALITY_BITONAL: u32 = 2u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;

// Byte `i` of the source, buffers being little-endian.
fn src_byte(i: u32) -> u32 {
    return (src[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

fn unpack_rgba(v: u32) -> vec4<u32> {
    return vec4<u32>(v & 0xffu, (v >> 8u) & 0xffu, (v >> 16u) & 0xffu, v >> 24u);
}

fn pack_rgba(p: vec4<u32>) -> u32 {
    return p.x | (p.y << 8u) | (p.z << 16u) | (p.w << 24u);
}

// Pixel (x, y) of the source as RGBA; gray is replicated into r, g and b, a
// missing alpha reads as 255.
fn load_pixel(x: u32, y: u32) -> vec4<u32> {
    let c = params.src_channels;
    if (c == 0u) {
        return unpack_rgba(src[y * params.src_w + x]);
    }
    let b = y * params.src_stride + x * c - params.src_base;
    if (c == 4u) {
        return unpack_rgba(src[b >> 2u]);
    }
    if (c == 1u) {
        let g = src_byte(b);
        return vec4<u32>(g, g, g, 255u);
    }
    if (c == 2u) {
        let g = src_byte(b);
        return vec4<u32>(g, g, g, src_byte(b + 1u));
    }
    return vec4<u32>(src_byte(b), src_byte(b + 1u), src_byte(b + 2u), 255u);
}

// fast_image_resize alpha::common::mul_div_255.
fn mul_div_255(a: vec3<u32>, b: u32) -> vec3<u32> {
    let t = a * b + vec3<u32>(128u);
    return ((t >> vec3<u32>(8u)) + t) >> vec3<u32>(8u);
}

// fast_image_resize's premultiply (multiply_alpha_pixel).
fn premultiply(p: vec4<u32>) -> vec4<u32> {
    return vec4<u32>(mul_div_255(p.xyz, p.w), p.w);
}

// fast_image_resize's un-premultiply: RECIP_ALPHA[a] = ((255 << 9) / a + 1) >> 1,
// then min((v * recip + 128) >> 8, 255); alpha 0 gives 0.
fn unpremultiply(p: vec4<u32>) -> vec4<u32> {
    var recip = 0u;
    if (p.w != 0u) {
        recip = ((130560u / p.w) + 1u) >> 1u;
    }
    let v = min((p.xyz * recip + vec3<u32>(128u)) >> vec3<u32>(8u), vec3<u32>(255u));
    return vec4<u32>(v, p.w);
}

// A source pixel ready for convolution.
fn load_for_resize(x: u32, y: u32) -> vec4<i32> {
    var px = load_pixel(x, y);
    if ((params.flags & FLAG_PREMULTIPLY) != 0u) {
        px = premultiply(px);
    }
    return vec4<i32>(px);
}

// Normalizer16::clip: arithmetic shift, clamp to a byte; then the optional
// un-premultiply; packed for the next pass.
fn finish_sample(acc: vec4<i32>) -> u32 {
    let shifted = acc >> vec4<u32>(params.shift);
    var px = vec4<u32>(clamp(shifted, vec4<i32>(0), vec4<i32>(255)));
    if ((params.flags & FLAG_UNPREMULTIPLY) != 0u) {
        px = unpremultiply(px);
    }
    return pack_rgba(px);
}

fn initial_acc() -> vec4<i32> {
    return vec4<i32>(1i << (params.shift - 1u));
}
