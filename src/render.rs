//! The render stage ([`render`]): decode the planned region at the planned
//! scale (or cut it from decoded units [`crate::decoded`] already holds),
//! transform it, encode it. Runs on the worker pool, never on the reactor
//! (`pipeline::render_on_pool`).
//! Knows nothing of HTTP; returns bytes or an [`Error`] with its status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cache::Encoded;
use crate::codec::{self, CodecError, ImageInfo};
use crate::decoded::TilePlan;
use crate::error::Error;
use crate::metrics::{Metrics, Stage};
use crate::model::{Format, Quality, Rotation};
use crate::pixels::Pixels;
use crate::plan::Plan;
use crate::source::SourceBytes;
use crate::transform::{self, TransformSpec};

/// Settings that do not vary per request.
#[derive(Clone, Copy, Debug)]
pub struct RenderSettings {
    pub jpeg_quality: u8,
    pub webp_lossless: bool,
    pub max_decode_pixels: u64,
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
        CodecError::SourceChanged => Error::source_changed(),
        // The origin of a remote master failed a range read: its fault, not
        // the image's (504 when it was too slow, 502 otherwise).
        CodecError::Unavailable { timeout: true, detail } => {
            Error::with_status(http::StatusCode::GATEWAY_TIMEOUT, "The image's origin did not answer in time")
                .with_detail(detail)
        }
        CodecError::Unavailable { timeout: false, detail } => {
            Error::with_status(http::StatusCode::BAD_GATEWAY, "The image's origin failed to send the image")
                .with_detail(detail)
        }
    }
}

/// Decodes the plan's region directly from the source bytes.
pub fn decode(
    data: &dyn SourceBytes,
    info: &ImageInfo,
    plan: &Plan,
    s: &RenderSettings,
    m: &Metrics,
) -> Result<Pixels, Error> {
    let t = Instant::now();
    m.decodes.inc();
    let p = codec::decode_with(data.as_ref(), data, info, plan.region, plan.scale, s.max_decode_pixels)
        .map_err(codec_error)?;
    m.observe(Stage::Decode, t.elapsed());
    Ok(p)
}

/// A request's region as decoded codestream tiles already fetched (see
/// [`crate::decoded`]): what remains is cutting it out.
pub struct Cut {
    pub plan: TilePlan,
    pub tiles: Vec<Arc<Pixels>>,
    /// How long fetching the tiles took (counted as the decode stage).
    pub waited: Duration,
    /// Reads that waited on a remote master's origin while fetching them.
    pub origin_waits: u64,
}

impl Cut {
    /// Cuts the region from the tiles.
    pub fn pixels(&self, m: &Metrics) -> Result<Pixels, Error> {
        let t = Instant::now();
        let p = self.plan.assemble(&self.tiles).map_err(codec_error)?;
        m.observe(Stage::Decode, self.waited + t.elapsed());
        Ok(p)
    }
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
    let (p, ran) = transform::apply(p, &transform_spec(plan), backend);
    count(m, ran);
    m.observe(Stage::Transform, t.elapsed());
    encode(&p, plan, s, m)
}

/// Transforms rectangles of one decoded unit together (on a GPU, one
/// batch reading the unit where it stays on the device:
/// [`transform::apply_in`]); each then goes to [`encode`]. The batch's time
/// is counted evenly against its items. `None` when a rectangle lies
/// outside the unit.
pub fn transform_in(
    unit: &Arc<Pixels>,
    items: Vec<(transform::gpu::Rect4, &Plan)>,
    m: &Metrics,
    backend: &transform::Backend,
) -> Option<Vec<Pixels>> {
    let t = Instant::now();
    let n = items.len();
    let specs: Vec<_> = items.into_iter().map(|(r, plan)| (r, transform_spec(plan))).collect();
    let out: Vec<Pixels> = transform::apply_in(unit, &specs, backend)
        .ok()?
        .into_iter()
        .map(|(p, ran)| {
            count(m, ran);
            p
        })
        .collect();
    let each = t.elapsed() / (n.max(1) as u32);
    for _ in 0..n {
        m.observe(Stage::Transform, each);
    }
    Some(out)
}

/// A cut that one unit holds, rendered on a GPU backend from that unit
/// (kept on the device while hot: [`transform::apply_in`]) rather than cut
/// on the CPU and uploaded; `None` for any other cut or backend.
fn finish_in_unit(
    cut: &Cut,
    plan: &Plan,
    s: &RenderSettings,
    m: &Metrics,
    backend: &transform::Backend,
) -> Option<Result<Encoded, Error>> {
    if !matches!(backend, transform::Backend::Gpu { .. }) {
        return None;
    }
    let [unit] = cut.tiles.as_slice() else { return None };
    let rect = cut.plan.rect_in(unit)?;
    let p = transform_in(unit, vec![(rect, plan)], m, backend)?.pop()?;
    m.observe(Stage::Decode, cut.waited);
    Some(encode(&p, plan, s, m))
}

/// Encodes transformed pixels in the plan's format.
pub fn encode(p: &Pixels, plan: &Plan, s: &RenderSettings, m: &Metrics) -> Result<Encoded, Error> {
    let t = Instant::now();
    let options = codec::encode::Options { quality: s.jpeg_quality, webp_lossless: s.webp_lossless };
    let body = codec::encode::encode_with(p, plan.format, &options).map_err(codec_error)?;
    m.observe(Stage::Encode, t.elapsed());
    Ok(Encoded { body: Bytes::from(body), media_type: plan.format.media_type() })
}

fn transform_spec(plan: &Plan) -> TransformSpec {
    TransformSpec {
        width: plan.scaled_w,
        height: plan.scaled_h,
        rotation: plan.rotation,
        quality: plan.quality,
        format: plan.format,
        src_crop: plan.src_crop(),
    }
}

/// Counts where a transform ran.
fn count(m: &Metrics, ran: transform::Ran) {
    match ran {
        transform::Ran::Cpu => {}
        transform::Ran::Gpu => m.gpu_jobs.inc(),
        transform::Ran::GpuFellBack => m.gpu_fallbacks.inc(),
    }
}

/// The passthrough: when the plan asks for exactly one stored JPEG tile of
/// a TIFF page, unchanged (its size, no rotation or mirror, default or
/// colour quality, as JPEG), that tile's bytes. A source whose ICC profile
/// needs converting to sRGB is never passed through.
pub fn stored_tile(data: &dyn SourceBytes, info: &ImageInfo, plan: &Plan) -> Option<Encoded> {
    let pyramid = info.tiff.as_deref()?;
    let unchanged = plan.format == Format::Jpg
        && matches!(plan.quality, Quality::Default | Quality::Color)
        && plan.rotation == Rotation::NONE
        && (plan.scaled_w, plan.scaled_h) == (plan.decoded.w, plan.decoded.h)
        && plan.region.x.is_multiple_of(plan.scale)
        && plan.region.y.is_multiple_of(plan.scale)
        && info.icc.is_none();
    if !unchanged {
        return None;
    }
    let body = codec::tiff::stored_jpeg_with(data.as_ref(), data, pyramid, plan.decoded, plan.scale)?;
    Some(Encoded { body: Bytes::from(body), media_type: Format::Jpg.media_type() })
}

/// Where a render's pixels come from.
pub enum Input<'a> {
    /// Decoded directly from the source's bytes; thrown away (503) when the
    /// source changed under the decode.
    Decode { data: &'a dyn SourceBytes, info: &'a ImageInfo },
    /// Cut from decoded units already fetched.
    Cut(&'a Cut),
}

/// The whole render, as the server runs it on a worker: the pixels (cut or
/// decoded), then transform and encode.
pub fn render(
    input: Input<'_>,
    plan: &Plan,
    s: &RenderSettings,
    m: &Metrics,
    backend: &transform::Backend,
) -> Result<Encoded, Error> {
    let pixels = match input {
        Input::Cut(cut) => {
            if let Some(done) = finish_in_unit(cut, plan, s, m, backend) {
                return done;
            }
            cut.pixels(m)?
        }
        Input::Decode { data, info } => {
            if let Some(tile) = stored_tile(data, info, plan) {
                if !data.intact() {
                    return Err(Error::source_changed());
                }
                m.passthrough.inc();
                return Ok(tile);
            }
            let p = decode(data, info, plan, s, m)?;
            if !data.intact() {
                return Err(Error::source_changed());
            }
            p
        }
    };
    finish_on(pixels, plan, s, m, backend)
}
