//! The JPEG 2000 encoder used for sample images and test fixtures (never on
//! the request path): interleaved 8- or 16-bit samples in, a JP2 or J2K
//! file out, with tiling, levels, layers, precincts and progression chosen
//! by [`EncodeParams`].

use super::*;

/// Progression orders of the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Progression {
    Lrcp,
    Rlcp,
    Rpcl,
    Pcrl,
    Cprl,
}

/// Encoder settings.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodeParams {
    /// Tile size; `None` writes one tile.
    pub tile_size: Option<(u32, u32)>,
    /// Resolution levels (decomposition levels + 1). Lowered to what the tile
    /// size allows (OpenJPEG needs tiles of at least `2^(levels-1)` each way)
    /// and to OpenJPEG's maximum of 32; 0 counts as 1.
    pub levels: u32,
    /// Reversible 5/3 wavelet and no truncation of the last layer (exact);
    /// otherwise the irreversible 9/7 wavelet.
    pub lossless: bool,
    /// Compression ratio of the final layer of a lossy image (e.g. 20.0);
    /// `None` keeps every coding pass. With `lossless`, the ratio of the
    /// next-to-last layer (default 10) when there are several layers.
    pub rate: Option<f32>,
    /// Quality layers (1 to 100); each earlier layer has twice the ratio of the
    /// next.
    pub layers: u32,
    pub progression: Progression,
    /// Precinct sizes (powers of two, at least 2) indexed by reduction as in
    /// [`Jp2Info::precinct_sizes`]: entry 0 for the full resolution; levels past
    /// the list halve the last entry (down to 2).
    pub precincts: Option<Vec<(u32, u32)>>,
    pub container: Container,
}

impl Default for EncodeParams {
    fn default() -> Self {
        EncodeParams {
            tile_size: None,
            levels: 6,
            lossless: true,
            rate: None,
            layers: 1,
            progression: Progression::Lrcp,
            precincts: None,
            container: Container::Jp2,
        }
    }
}

/// Interleaved samples to encode.
#[derive(Clone, Copy, Debug)]
pub struct EncodeInput<'a> {
    pub width: u32,
    pub height: u32,
    /// 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
    pub components: u32,
    /// Bits per sample: 1..=8 with [`Samples::U8`], 1..=16 with [`Samples::U16`];
    /// every sample must fit.
    pub precision: u32,
    pub samples: Samples<'a>,
}

impl<'a> EncodeInput<'a> {
    /// 8-bit pixels as they are: components from the layout, precision 8.
    pub fn from_pixels(p: &'a Pixels) -> EncodeInput<'a> {
        EncodeInput {
            width: p.width(),
            height: p.height(),
            components: p.layout().channels() as u32,
            precision: 8,
            samples: Samples::U8(p.data()),
        }
    }
}

/// Interleaved sample storage, `width * height * components` long.
#[derive(Clone, Copy, Debug)]
pub enum Samples<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
}

/// Encodes to a JP2 file or a raw codestream in memory. RGB(A) uses the
/// multi-component transform; the 2nd (gray) or 4th (RGB) component is marked
/// as alpha: in a JP2 by a channel definition box (OpenJPEG writes one when
/// exactly one component is flagged alpha), in a raw codestream only by the
/// component count, which is how [`decode`] reads it back. Runs on the calling
/// thread unless `openjpeg-sys` is built with its `threads` feature, in which
/// case OpenJPEG's pool uses all available cores (decoding always uses one).
pub fn encode(input: &EncodeInput, params: &EncodeParams) -> Result<Vec<u8>, Jp2Error> {
    encode_marked(input, params, 0)
}

/// [`encode`] with start-of-packet (`0x02`) and end-of-packet-header
/// (`0x04`) markers as `markers` asks (COD's Scod bits), as archival
/// encoders often write them.
pub(super) fn encode_marked(input: &EncodeInput, params: &EncodeParams, markers: u8) -> Result<Vec<u8>, Jp2Error> {
    let n = input.components;
    if !(1..=4).contains(&n) {
        return Err(Jp2Error::InvalidInput(format!("{n} components (1 to 4 supported)")));
    }
    if input.width == 0 || input.height == 0 {
        return Err(Jp2Error::InvalidInput("empty image".into()));
    }
    let max_prec = match input.samples {
        Samples::U8(_) => 8,
        Samples::U16(_) => 16,
    };
    if !(1..=max_prec).contains(&input.precision) {
        return Err(Jp2Error::InvalidInput(format!("precision {} with {max_prec}-bit samples", input.precision)));
    }
    let pixels = input.width as usize * input.height as usize;
    let expected = pixels.checked_mul(n as usize);
    let len = match input.samples {
        Samples::U8(s) => s.len(),
        Samples::U16(s) => s.len(),
    };
    if expected != Some(len) {
        return Err(Jp2Error::InvalidInput(format!("{len} samples for {}x{}x{n}", input.width, input.height)));
    }
    let max = (1u32 << input.precision) - 1;
    let fits = match input.samples {
        Samples::U8(s) => s.iter().all(|&v| u32::from(v) <= max),
        Samples::U16(s) => s.iter().all(|&v| u32::from(v) <= max),
    };
    if !fits {
        return Err(Jp2Error::InvalidInput(format!("a sample exceeds {} bits", input.precision)));
    }
    let n = n as usize;
    let mut planes: Vec<EncodePlane> = (0..n)
        .map(|c| EncodePlane {
            dx: 1,
            dy: 1,
            precision: input.precision,
            signed: false,
            alpha: (n == 2 || n == 4) && c == n - 1,
            data: Vec::with_capacity(pixels),
        })
        .collect();
    match input.samples {
        Samples::U8(s) => deinterleave(s, &mut planes),
        Samples::U16(s) => deinterleave(s, &mut planes),
    }
    let colour = if n <= 2 { opj::COLOR_SPACE::OPJ_CLRSPC_GRAY } else { opj::COLOR_SPACE::OPJ_CLRSPC_SRGB };
    encode_planes(input.width, input.height, &planes, colour, n >= 3, params, markers)
}

fn deinterleave<T: Copy + Into<i32>>(samples: &[T], planes: &mut [EncodePlane]) {
    let n = planes.len();
    for px in samples.chunks_exact(n) {
        for (plane, &v) in planes.iter_mut().zip(px) {
            plane.data.push(v.into());
        }
    }
}

/// One component to encode: `ceil(width / dx) * ceil(height / dy)` samples.
pub(super) struct EncodePlane {
    pub(super) dx: u32,
    pub(super) dy: u32,
    pub(super) precision: u32,
    pub(super) signed: bool,
    pub(super) alpha: bool,
    pub(super) data: Vec<i32>,
}

/// Encodes planes; `markers` as in [`encode_marked`].
pub(super) fn encode_planes(
    width: u32,
    height: u32,
    planes: &[EncodePlane],
    colour: opj::COLOR_SPACE,
    mct: bool,
    params: &EncodeParams,
    markers: u8,
) -> Result<Vec<u8>, Jp2Error> {
    if planes.is_empty() || planes.len() > 4 {
        return Err(Jp2Error::InvalidInput("1 to 4 components".into()));
    }
    if width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(Jp2Error::InvalidInput("image too large".into()));
    }
    if !(1..=100).contains(&params.layers) {
        return Err(Jp2Error::InvalidInput("layers must be 1 to 100".into()));
    }
    if let Some(rate) = params.rate {
        if !(rate.is_finite() && rate >= 1.0) {
            return Err(Jp2Error::InvalidInput("rate must be a ratio of at least 1".into()));
        }
    }
    let (tile_w, tile_h) = match params.tile_size {
        Some((w, h)) => {
            if w == 0 || h == 0 || w > i32::MAX as u32 || h > i32::MAX as u32 {
                return Err(Jp2Error::InvalidInput("bad tile size".into()));
            }
            (w, h)
        }
        None => (width, height),
    };
    let precincts = match &params.precincts {
        Some(p) => {
            if p.is_empty() || p.len() > 33 {
                return Err(Jp2Error::InvalidInput("1 to 33 precinct sizes".into()));
            }
            if p.iter().any(|&(w, h)| {
                !w.is_power_of_two() || !h.is_power_of_two() || w < 2 || h < 2 || w > 1 << 15 || h > 1 << 15
            }) {
                return Err(Jp2Error::InvalidInput("precinct sizes must be powers of two from 2 to 32768".into()));
            }
            Some(p.as_slice())
        }
        None => None,
    };
    let mut levels = params.levels.clamp(1, 32);
    while levels > 1 && (tile_w.min(tile_h) >> (levels - 1)) == 0 {
        levels -= 1;
    }

    let mut cmpt: Vec<opj::opj_image_cmptparm_t> = Vec::with_capacity(planes.len());
    for p in planes {
        if p.dx == 0 || p.dy == 0 || p.dx > 255 || p.dy > 255 || !(1..=16).contains(&p.precision) {
            return Err(Jp2Error::InvalidInput("bad component".into()));
        }
        let w = width.div_ceil(p.dx);
        let h = height.div_ceil(p.dy);
        if p.data.len() != w as usize * h as usize {
            return Err(Jp2Error::InvalidInput("component sample count".into()));
        }
        cmpt.push(opj::opj_image_cmptparm_t {
            dx: p.dx,
            dy: p.dy,
            w,
            h,
            x0: 0,
            y0: 0,
            prec: p.precision,
            bpp: p.precision,
            sgnd: u32::from(p.signed),
        });
    }

    // SAFETY: `cmpt` holds `planes.len()` initialised parameter structs, read
    // (not kept) by OpenJPEG; a null result is handled.
    let image = ImageGuard(unsafe { opj::opj_image_create(cmpt.len() as u32, cmpt.as_mut_ptr(), colour) });
    if image.0.is_null() {
        return Err(Jp2Error::codec("cannot allocate image"));
    }
    {
        // SAFETY: the image is non-null, owned by `image`, and no OpenJPEG call
        // runs while this exclusive reference lives.
        let img = unsafe { &mut *image.0 };
        img.x0 = 0;
        img.y0 = 0;
        img.x1 = width;
        img.y1 = height;
        if img.comps.is_null() || img.numcomps as usize != planes.len() {
            return Err(Jp2Error::codec("cannot allocate image"));
        }
        // SAFETY: OpenJPEG allocated `numcomps` components at `comps`.
        let comps = unsafe { std::slice::from_raw_parts_mut(img.comps, planes.len()) };
        for (comp, plane) in comps.iter_mut().zip(planes) {
            if comp.data.is_null() || comp.w as usize * comp.h as usize != plane.data.len() {
                return Err(Jp2Error::codec("cannot allocate image"));
            }
            // SAFETY: `opj_image_create` allocated `w * h` samples for the
            // component (checked equal to the plane's length above).
            let dst = unsafe { std::slice::from_raw_parts_mut(comp.data, plane.data.len()) };
            dst.copy_from_slice(&plane.data);
            comp.alpha = u16::from(plane.alpha);
        }
    }

    // SAFETY: `opj_cparameters_t` is a plain C struct for which all-zero is a
    // valid value; OpenJPEG then fills in its defaults. Boxed: it is ~30 KiB.
    let mut cp: Box<opj::opj_cparameters_t> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: valid pointer to the parameters.
    unsafe { opj::opj_set_default_encoder_parameters(&mut *cp) };
    if params.tile_size.is_some() {
        cp.tile_size_on = 1;
        cp.cp_tx0 = 0;
        cp.cp_ty0 = 0;
        cp.cp_tdx = tile_w as i32;
        cp.cp_tdy = tile_h as i32;
    }
    cp.numresolution = levels as i32;
    cp.irreversible = i32::from(!params.lossless);
    cp.tcp_mct = i8::from(mct) as c_char;
    cp.prog_order = match params.progression {
        Progression::Lrcp => opj::PROG_ORDER::OPJ_LRCP,
        Progression::Rlcp => opj::PROG_ORDER::OPJ_RLCP,
        Progression::Rpcl => opj::PROG_ORDER::OPJ_RPCL,
        Progression::Pcrl => opj::PROG_ORDER::OPJ_PCRL,
        Progression::Cprl => opj::PROG_ORDER::OPJ_CPRL,
    };
    let layers = params.layers as usize;
    cp.tcp_numlayers = layers as i32;
    cp.cp_disto_alloc = 1;
    for i in 0..layers {
        let doublings = (layers - 1 - i) as i32;
        cp.tcp_rates[i] = if params.lossless {
            if i + 1 == layers {
                0.0
            } else {
                params.rate.unwrap_or(10.0) * 2f32.powi(doublings - 1)
            }
        } else {
            match params.rate {
                Some(r) => r * 2f32.powi(doublings),
                None => 0.0,
            }
        };
    }
    cp.csty |= i32::from(markers & 0x06);
    if let Some(p) = precincts {
        cp.csty |= 0x01;
        cp.res_spec = p.len() as i32;
        for (i, &(w, h)) in p.iter().enumerate() {
            cp.prcw_init[i] = w as i32;
            cp.prch_init[i] = h as i32;
        }
    }

    let mut messages = CallbackData::new(Messages::default());
    let mut sink = CallbackData::new(VecSink::default());
    let codec = CodecGuard::encoder(params.container, &messages)?;
    // SAFETY: valid codec, parameters and image; OpenJPEG copies what it needs.
    let ok = unsafe { opj::opj_setup_encoder(codec.ptr(), &mut *cp, image.0) };
    if ok == 0 {
        return Err(Jp2Error::codec(std::mem::take(&mut messages.get_mut().text)));
    }
    {
        // Packet lengths (PLT) in each tile-part header, and for tiled files
        // a tile-part length index (TLM) in the main header, as archival
        // encoders write them (Kakadu's ORGgen_plt, ORGgen_tlm): a decoder
        // finds any tile without walking the tile-parts before it, and the
        // end of a resolution in an untiled file (see `prefix`), which for a
        // master read by range is one round trip instead of many.
        let (plt, tlm) = (c"PLT=YES", c"TLM=YES");
        let options = if params.tile_size.is_some() {
            [plt.as_ptr(), tlm.as_ptr(), ptr::null()]
        } else {
            [plt.as_ptr(), ptr::null(), ptr::null()]
        };
        // SAFETY: valid codec after setup; a NULL-terminated array of C
        // strings that outlive the call (OpenJPEG parses them at once).
        let ok = unsafe { opj::opj_encoder_set_extra_options(codec.ptr(), options.as_ptr()) };
        if ok == 0 {
            return Err(Jp2Error::codec(std::mem::take(&mut messages.get_mut().text)));
        }
    }
    codec.set_threads(std::thread::available_parallelism().map_or(1, |n| n.get()) as i32);
    let stream = StreamGuard::output(&sink)?;
    // SAFETY: valid codec, image and stream; the sink behind the stream is
    // alive and not referenced from Rust during these calls.
    let ok = unsafe {
        opj::opj_start_compress(codec.ptr(), image.0, stream.ptr()) != 0
            && opj::opj_encode(codec.ptr(), stream.ptr()) != 0
            && opj::opj_end_compress(codec.ptr(), stream.ptr()) != 0
    };
    drop(stream);
    drop(codec);
    if !ok {
        return Err(Jp2Error::codec(std::mem::take(&mut messages.get_mut().text)));
    }
    Ok(std::mem::take(&mut sink.get_mut().buf))
}
