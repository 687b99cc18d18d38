//! The render stage: decode the planned region at the planned scale,
//! transform it, encode it. Runs on the worker pool, never on the reactor.
//! Knows nothing of HTTP; returns bytes or an [`Error`] with its status.

use std::time::Instant;

use bytes::Bytes;

use crate::cache::Encoded;
use crate::codec::{self, CodecError, ImageInfo};
use crate::decoded::DecodedTiles;
use crate::error::Error;
use crate::metrics::{Metrics, Stage};
use crate::pixels::Pixels;
use crate::plan::Plan;
use crate::source::SourceVersion;
use crate::transform::{self, TransformSpec};

/// Settings that do not vary per request.
#[derive(Clone, Copy, Debug)]
pub struct RenderSettings {
    pub jpeg_quality: u8,
    pub max_decode_pixels: u64,
}

/// Per-process render resources: the transform backend.
pub struct Renderer {
    pub backend: transform::Backend,
}

/// Maps codec failures to client-facing errors (public messages stay generic).
pub fn codec_error(e: CodecError) -> Error {
    match e {
        CodecError::UnknownFormat => Error::not_implemented("The source image format is not supported"),
        CodecError::Unsupported(d) => {
            Error::not_implemented("The source image uses a pixel format this server does not support").with_detail(d)
        }
        CodecError::TooLarge { pixels, limit } => {
            Error::bad_request("The request would decode too many pixels").with_detail(format!("{pixels} > {limit}"))
        }
        CodecError::Corrupt(d) => Error::undecodable(d),
        CodecError::Encode(d) => Error::internal(format!("encode: {d}")),
    }
}

/// Where the source bytes come from, for the decoded-tile cache.
#[derive(Clone, Copy)]
pub struct SourceRef<'a> {
    pub data: &'a [u8],
    pub file: &'a str,
    pub version: SourceVersion,
}

/// Decodes the plan's region: cut from cached codestream tiles when the
/// source is a tiled JPEG 2000 or a large JPEG and the cache is on (see
/// [`crate::decoded`]), else decoded directly.
pub fn decode(
    src: SourceRef<'_>,
    info: &ImageInfo,
    plan: &Plan,
    s: &RenderSettings,
    m: &Metrics,
    tiles: Option<&DecodedTiles>,
) -> Result<Pixels, Error> {
    let t = Instant::now();
    let counted = || m.decodes.inc();
    let via_tiles = tiles.and_then(|c| {
        c.decode(src.data, info, src.file, src.version, plan.region, plan.scale, s.max_decode_pixels, &counted)
    });
    let p = match via_tiles {
        Some(r) => r.map_err(codec_error)?,
        None => {
            m.decodes.inc();
            codec::decode(src.data, info, plan.region, plan.scale, s.max_decode_pixels).map_err(codec_error)?
        }
    };
    m.observe(Stage::Decode, t.elapsed());
    Ok(p)
}

/// Transforms decoded pixels and encodes them.
pub fn finish(p: Pixels, plan: &Plan, s: &RenderSettings, m: &Metrics) -> Result<Encoded, Error> {
    finish_on(p, plan, s, m, &transform::Backend::Cpu)
}

/// [`finish`] on a given transform backend.
pub fn finish_on(
    p: Pixels,
    plan: &Plan,
    s: &RenderSettings,
    m: &Metrics,
    backend: &transform::Backend,
) -> Result<Encoded, Error> {
    let t = Instant::now();
    let spec = TransformSpec {
        width: plan.scaled_w,
        height: plan.scaled_h,
        rotation: plan.rotation,
        quality: plan.quality,
        format: plan.format,
        src_crop: plan.src_crop(),
    };
    let p = transform::apply(p, &spec, backend, &|| m.gpu_fallbacks.inc());
    m.observe(Stage::Transform, t.elapsed());
    let t = Instant::now();
    let body = codec::encode::encode(&p, plan.format, s.jpeg_quality).map_err(codec_error)?;
    m.observe(Stage::Encode, t.elapsed());
    Ok(Encoded { body: Bytes::from(body), media_type: plan.format.media_type() })
}

/// The whole render, transforms on the CPU.
pub fn render(
    src: SourceRef<'_>,
    info: &ImageInfo,
    plan: &Plan,
    s: &RenderSettings,
    m: &Metrics,
    tiles: Option<&DecodedTiles>,
) -> Result<Encoded, Error> {
    render_on(src, info, plan, s, m, tiles, &transform::Backend::Cpu)
}

/// The whole render on a chosen transform backend.
pub fn render_on(
    src: SourceRef<'_>,
    info: &ImageInfo,
    plan: &Plan,
    s: &RenderSettings,
    m: &Metrics,
    tiles: Option<&DecodedTiles>,
    backend: &transform::Backend,
) -> Result<Encoded, Error> {
    let p = decode(src, info, plan, s, m, tiles)?;
    finish_on(p, plan, s, m, backend)
}
