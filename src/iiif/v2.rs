//! The IIIF Image API 2.1.1 grammar: `{region}/{size}/{rotation}/{quality}.{format}`
//! parsed into the version-neutral [`ImageRequest`](super::ImageRequest).

use super::{
    lookup_format, parse_decimal, parse_uint, FormatLookup, ImageRequest, Quality, Region, Rotation, Size, SizeKind,
};
use crate::error::{Error, Result};

/// Parses the four path segments after the identifier.
pub fn parse(region: &str, size: &str, rotation: &str, quality_format: &str) -> Result<ImageRequest> {
    let region = parse_region(region)?;
    let size = parse_size(size)?;
    let rotation = parse_rotation(rotation)?;
    let (quality, format) = parse_quality_format(quality_format)?;
    Ok(ImageRequest { region, size, rotation, quality, format })
}

pub fn parse_region(s: &str) -> Result<Region> {
    match s {
        "full" => return Ok(Region::Full),
        "square" => return Ok(Region::Square),
        _ => {}
    }
    if let Some(rest) = s.strip_prefix("pct:") {
        let v = four(rest, parse_decimal).ok_or_else(|| bad_region(s))?;
        if v[2] <= 0.0 || v[3] <= 0.0 {
            return Err(Error::bad_request("Region width and height must be greater than zero"));
        }
        if v[0] >= 100.0 || v[1] >= 100.0 {
            return Err(Error::bad_request("Region lies outside the image"));
        }
        return Ok(Region::Percent { x: v[0], y: v[1], w: v[2], h: v[3] });
    }
    let v = four(s, parse_uint).ok_or_else(|| bad_region(s))?;
    if v[2] == 0 || v[3] == 0 {
        return Err(Error::bad_request("Region width and height must be greater than zero"));
    }
    Ok(Region::Pixels { x: v[0], y: v[1], w: v[2], h: v[3] })
}

fn bad_region(_s: &str) -> Error {
    Error::bad_request("Invalid region: expected full, square, x,y,w,h or pct:x,y,w,h")
}

fn four<T: Copy + Default>(s: &str, f: impl Fn(&str) -> Option<T>) -> Option<[T; 4]> {
    let mut out = [T::default(); 4];
    let mut parts = s.split(',');
    for slot in out.iter_mut() {
        *slot = f(parts.next()?)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}

pub fn parse_size(s: &str) -> Result<Size> {
    let kind = parse_size_kind(s)?;
    // 2.x allows scaling above the region's size for every form but `max`,
    // which by definition never exceeds it.
    Ok(Size { kind, upscale: !matches!(kind, SizeKind::Max) })
}

pub(crate) fn parse_size_kind(s: &str) -> Result<SizeKind> {
    let bad = || Error::bad_request("Invalid size: expected full, max, w,, ,h, pct:n, w,h or !w,h");
    let zero = || Error::bad_request("Requested size is zero pixels");
    match s {
        "full" => return Ok(SizeKind::Full),
        "max" => return Ok(SizeKind::Max),
        _ => {}
    }
    if let Some(p) = s.strip_prefix("pct:") {
        let v = parse_decimal(p).ok_or_else(bad)?;
        if v <= 0.0 {
            return Err(zero());
        }
        return Ok(SizeKind::Percent(v));
    }
    let (best_fit, rest) = match s.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (w, h) = rest.split_once(',').ok_or_else(bad)?;
    let w = if w.is_empty() { None } else { Some(parse_uint(w).ok_or_else(bad)?) };
    let h = if h.is_empty() { None } else { Some(parse_uint(h).ok_or_else(bad)?) };
    if w == Some(0) || h == Some(0) {
        return Err(zero());
    }
    match (w, h, best_fit) {
        (Some(w), Some(h), true) => Ok(SizeKind::BestFit(w, h)),
        (Some(w), Some(h), false) => Ok(SizeKind::Exact(w, h)),
        (Some(w), None, false) => Ok(SizeKind::Width(w)),
        (None, Some(h), false) => Ok(SizeKind::Height(h)),
        _ => Err(bad()),
    }
}

pub fn parse_rotation(s: &str) -> Result<Rotation> {
    let (mirror, rest) = match s.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let degrees = parse_decimal(rest)
        .ok_or_else(|| Error::bad_request("Invalid rotation: expected a number from 0 to 360, optionally after !"))?;
    if degrees > 360.0 {
        return Err(Error::bad_request("Rotation must be between 0 and 360"));
    }
    let degrees = if degrees == 360.0 { 0.0 } else { degrees };
    Ok(Rotation { mirror, degrees })
}

pub fn parse_quality(s: &str) -> Result<Quality> {
    match s {
        "default" => Ok(Quality::Default),
        "color" => Ok(Quality::Color),
        "gray" => Ok(Quality::Gray),
        "bitonal" => Ok(Quality::Bitonal),
        _ => Err(Error::bad_request("Invalid quality: expected default, color, gray or bitonal")),
    }
}

pub fn parse_quality_format(s: &str) -> Result<(Quality, super::Format)> {
    let (q, f) = s.rsplit_once('.').ok_or_else(|| Error::bad_request("Missing format: expected {quality}.{format}"))?;
    let quality = parse_quality(q)?;
    let format = match lookup_format(f) {
        FormatLookup::Supported(f) => f,
        FormatLookup::KnownUnsupported => return Err(Error::unsupported_format("This output format is not supported")),
        FormatLookup::Unknown => return Err(Error::bad_request("Unknown output format")),
    };
    Ok((quality, format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iiif::Format;
    use http::StatusCode;

    fn status(r: Result<impl std::fmt::Debug>) -> StatusCode {
        r.expect_err("should fail").status()
    }

    #[test]
    fn region_keywords_pixels_and_percent_parse() {
        assert_eq!(parse_region("full").unwrap(), Region::Full);
        assert_eq!(parse_region("square").unwrap(), Region::Square);
        assert_eq!(parse_region("10,20,30,40").unwrap(), Region::Pixels { x: 10, y: 20, w: 30, h: 40 });
        assert_eq!(parse_region("pct:10,20.5,30,40").unwrap(), Region::Percent { x: 10.0, y: 20.5, w: 30.0, h: 40.0 });
    }

    #[test]
    fn region_syntax_errors_are_400() {
        for bad in [
            "",
            "ful",
            "1,2,3",
            "1,2,3,4,5",
            "-1,0,10,10",
            "a,b,c,d",
            "pct:1,2,3",
            "pct:-1,0,10,10",
            "1.5,0,10,10",
            "pct:",
            "0,0,10,",
            "10,10,10,10 ",
            "pct:nan,0,1,1",
        ] {
            assert_eq!(status(parse_region(bad)), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn region_of_zero_width_or_height_is_400() {
        for bad in ["0,0,0,10", "0,0,10,0", "pct:0,0,0,10", "pct:0,0,10,0"] {
            assert_eq!(status(parse_region(bad)), StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn percent_region_starting_past_the_edge_is_400() {
        assert_eq!(status(parse_region("pct:100,0,10,10")), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn size_forms_parse() {
        use SizeKind::*;
        let k = |s| parse_size(s).unwrap().kind;
        assert_eq!(k("full"), Full);
        assert_eq!(k("max"), Max);
        assert_eq!(k("100,"), Width(100));
        assert_eq!(k(",100"), Height(100));
        assert_eq!(k("pct:50"), Percent(50.0));
        assert_eq!(k("pct:12.5"), Percent(12.5));
        assert_eq!(k("100,200"), Exact(100, 200));
        assert_eq!(k("!100,200"), BestFit(100, 200));
        assert!(parse_size("100,").unwrap().upscale, "2.x always allows upscaling");
    }

    #[test]
    fn size_errors_are_400() {
        for bad in [
            "", ",", "!,", "!100,", "!,100", "0,", ",0", "0,0", "pct:0", "pct:-5", "pct:", "10", "a,", "-10,",
            "10,10,10", "^max", "fullx", "!0,10",
        ] {
            assert_eq!(status(parse_size(bad)), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn rotation_parses_degrees_mirror_and_wraps_360() {
        assert_eq!(parse_rotation("0").unwrap(), Rotation::NONE);
        assert_eq!(parse_rotation("!90").unwrap(), Rotation { mirror: true, degrees: 90.0 });
        assert_eq!(parse_rotation("22.5").unwrap().degrees, 22.5);
        assert_eq!(parse_rotation("360").unwrap().degrees, 0.0);
    }

    #[test]
    fn rotation_errors_are_400() {
        for bad in ["", "!", "-90", "361", "abc", "90!", "!!90", "1e2"] {
            assert_eq!(status(parse_rotation(bad)), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn quality_and_format_parse() {
        assert_eq!(parse_quality_format("default.jpg").unwrap(), (Quality::Default, Format::Jpg));
        assert_eq!(parse_quality_format("gray.png").unwrap(), (Quality::Gray, Format::Png));
        assert_eq!(parse_quality_format("bitonal.webp").unwrap(), (Quality::Bitonal, Format::Webp));
        assert_eq!(parse_quality_format("color.tif").unwrap(), (Quality::Color, Format::Tif));
    }

    #[test]
    fn unknown_quality_or_format_is_400_and_known_unsupported_format_is_415() {
        assert_eq!(status(parse_quality_format("native.jpg")), StatusCode::BAD_REQUEST);
        assert_eq!(status(parse_quality_format("default")), StatusCode::BAD_REQUEST);
        assert_eq!(status(parse_quality_format("default.xyz")), StatusCode::BAD_REQUEST);
        assert_eq!(status(parse_quality_format("default.")), StatusCode::BAD_REQUEST);
        assert_eq!(status(parse_quality_format("default.jp2")), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(status(parse_quality_format("default.pdf")), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
