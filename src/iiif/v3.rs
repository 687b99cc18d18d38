//! The IIIF Image API 3.0 grammar. It shares region, rotation, quality and
//! format with 2.1; the size grammar differs: `full` is gone, and scaling above
//! the region's size needs the `^` prefix.

use super::{v2, ImageRequest, Size, SizeKind};
use crate::error::{Error, Result};

/// Parses the four path segments after the identifier.
pub fn parse(region: &str, size: &str, rotation: &str, quality_format: &str) -> Result<ImageRequest> {
    let region = v2::parse_region(region)?;
    let size = parse_size(size)?;
    let rotation = v2::parse_rotation(rotation)?;
    let (quality, format) = v2::parse_quality_format(quality_format)?;
    Ok(ImageRequest { region, size, rotation, quality, format })
}

pub fn parse_size(s: &str) -> Result<Size> {
    let (upscale, rest) = match s.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if rest == "full" {
        return Err(Error::bad_request("Size full is not part of Image API 3.0: use max"));
    }
    let kind = v2::parse_size_kind(rest)?;
    if let (false, SizeKind::Percent(p)) = (upscale, kind) {
        if p > 100.0 {
            return Err(Error::bad_request("Scaling above 100% requires the ^ prefix"));
        }
    }
    Ok(Size { kind, upscale })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn caret_marks_upscaling_and_full_is_rejected() {
        assert_eq!(parse_size("^max").unwrap(), Size { kind: SizeKind::Max, upscale: true });
        assert_eq!(parse_size("100,").unwrap(), Size { kind: SizeKind::Width(100), upscale: false });
        assert_eq!(parse_size("^!10,20").unwrap(), Size { kind: SizeKind::BestFit(10, 20), upscale: true });
        assert_eq!(parse_size("full").unwrap_err().status(), StatusCode::BAD_REQUEST);
        assert_eq!(parse_size("pct:150").unwrap_err().status(), StatusCode::BAD_REQUEST);
        assert!(parse_size("^pct:150").is_ok());
        assert_eq!(parse_size("^").unwrap_err().status(), StatusCode::BAD_REQUEST);
    }
}
