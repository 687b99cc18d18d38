//! The images under test: URL checks (http only; loopback only unless
//! `--allow-remote`), fetching each info.json, and reading it (Image API 2
//! or 3) into a [`ImageSpec`]. The loopback check applies both to the URL
//! given and to the `@id`/`id` the document names, which the requests use.

use std::net::IpAddr;
use std::time::Duration;

use http::Uri;

use super::runner::{fetch_body, new_client};
use super::session::{ApiVersion, ImageSpec, TileSpec};
use super::LoadtestError;

/// info.json bodies larger than this are refused.
const MAX_INFO_BYTES: usize = 16 << 20;

/// True for `localhost`, 127.0.0.0/8 and ::1 (also IPv4-mapped), with or
/// without IPv6 brackets. No name resolution: other names are not loopback.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match h.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.is_loopback(),
        Ok(IpAddr::V6(a)) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Err(_) => false,
    }
}

/// Parses `url` and checks it is `http://` and (unless `allow_remote`) on
/// loopback. `what` describes the URL in messages ("URL http://...").
pub fn check_url(url: &str, what: &str, allow_remote: bool) -> Result<Uri, LoadtestError> {
    let uri: Uri = url.parse().map_err(|e| LoadtestError::BadUrl { url: url.to_string(), reason: format!("{e}") })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(s) if s.eq_ignore_ascii_case("https") => return Err(LoadtestError::Https(url.to_string())),
        Some(s) => {
            return Err(LoadtestError::BadUrl {
                url: url.to_string(),
                reason: format!("scheme {s:?}: only http:// URLs are supported"),
            })
        }
        None => {
            return Err(LoadtestError::BadUrl {
                url: url.to_string(),
                reason: "not an absolute URL (expected http://host:port/.../info.json)".into(),
            })
        }
    }
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err(LoadtestError::BadUrl { url: url.to_string(), reason: "no host".into() });
    }
    if !allow_remote && !is_loopback_host(host) {
        return Err(LoadtestError::NotLoopback { what: what.to_string(), host: host.to_string() });
    }
    Ok(uri)
}

/// Reads an info.json. `url` is where it came from: the fallback base URI
/// when the document names none.
pub fn parse_info(url: &str, body: &[u8]) -> Result<ImageSpec, LoadtestError> {
    let bad = |reason: String| LoadtestError::BadInfo { url: url.to_string(), reason };
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| bad("not a JSON object".into()))?;
    let context = match obj.get("@context") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|c| c.as_str()).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    };
    let version = if context.contains("/image/3") || obj.get("type").and_then(|t| t.as_str()) == Some("ImageService3") {
        ApiVersion::V3
    } else if context.contains("/image/2") {
        ApiVersion::V2
    } else if context.contains("/image/1") || context.contains("/image-api/") {
        return Err(bad("Image API 1 is not supported (only 2 and 3)".into()));
    } else if obj.contains_key("@id") {
        ApiVersion::V2
    } else if obj.contains_key("id") {
        ApiVersion::V3
    } else {
        return Err(bad("no @context, @id or id: not a IIIF Image API 2 or 3 document".into()));
    };
    let dim = |k: &str| {
        obj.get(k)
            .and_then(|x| x.as_u64())
            .and_then(|x| u32::try_from(x).ok())
            .filter(|x| *x > 0)
            .ok_or_else(|| bad(format!("{k:?} missing or not a positive whole number")))
    };
    let (width, height) = (dim("width")?, dim("height")?);
    let id_keys: &[&str] = match version {
        ApiVersion::V2 => &["@id", "id"],
        ApiVersion::V3 => &["id", "@id"],
    };
    let id = id_keys
        .iter()
        .find_map(|k| obj.get(*k).and_then(|x| x.as_str()))
        .map(str::to_string)
        .or_else(|| url.strip_suffix("/info.json").map(str::to_string))
        .ok_or_else(|| bad("no @id/id, and the URL does not end in /info.json".into()))?;
    let id = id.trim_end_matches('/').to_string();
    let num = |x: &serde_json::Value, k: &str| x.get(k).and_then(|n| n.as_u64()).and_then(|n| u32::try_from(n).ok());
    let tiles = obj.get("tiles").and_then(|t| t.as_array()).and_then(|a| a.first()).and_then(|t| {
        let w = num(t, "width").filter(|w| *w > 0)?;
        let h = num(t, "height").filter(|h| *h > 0).unwrap_or(w);
        let mut sfs: Vec<u32> = t
            .get("scaleFactors")
            .and_then(|s| s.as_array())
            .map(|a| {
                a.iter().filter_map(|n| n.as_u64()).filter_map(|n| u32::try_from(n).ok()).filter(|n| *n > 0).collect()
            })
            .unwrap_or_default();
        if sfs.is_empty() {
            sfs.push(1);
        }
        Some(TileSpec { width: w, height: h, scale_factors: sfs })
    });
    let sizes = obj
        .get("sizes")
        .and_then(|s| s.as_array())
        .map(|a| a.iter().filter_map(|s| Some((num(s, "width")?, num(s, "height")?))).collect())
        .unwrap_or_default();
    Ok(ImageSpec { id, version, width, height, tiles, sizes })
}

/// Fetches and reads one info.json, checking its URL before and the base
/// URI it names after.
pub async fn load(url: &str, allow_remote: bool, timeout: Duration) -> Result<ImageSpec, LoadtestError> {
    let uri = check_url(url, &format!("URL {url}"), allow_remote)?;
    let client = new_client(1, timeout);
    let fetched = tokio::time::timeout(timeout, fetch_body(&client, uri, MAX_INFO_BYTES)).await;
    let (status, body) = match fetched {
        Err(_) => {
            return Err(LoadtestError::Fetch { url: url.to_string(), reason: format!("no answer in {timeout:?}") })
        }
        Ok(Err(reason)) => return Err(LoadtestError::Fetch { url: url.to_string(), reason }),
        Ok(Ok(x)) => x,
    };
    if status != 200 {
        let hint = if (300..400).contains(&status) {
            " (redirects are not followed: give the info.json URL itself)"
        } else {
            ""
        };
        return Err(LoadtestError::Fetch { url: url.to_string(), reason: format!("HTTP {status}{hint}") });
    }
    let spec = parse_info(url, &body)?;
    check_url(&spec.id, &format!("image id {} (named by {url})", spec.id), allow_remote)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in
            ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "localhost.", "[::1]", "::1", "[::ffff:127.0.0.1]"]
        {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "10.0.0.1",
            "0.0.0.0",
            "128.0.0.1",
            "example.org",
            "localhost.example.org",
            "a.localhost",
            "[::2]",
            "[::]",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn url_checks() {
        assert!(check_url("http://127.0.0.1:8182/iiif/2/x/info.json", "URL", false).is_ok());
        assert!(check_url("http://[::1]:8182/iiif/2/x/info.json", "URL", false).is_ok());
        let e = check_url("http://example.org/iiif/2/x/info.json", "URL", false).unwrap_err();
        assert!(matches!(e, LoadtestError::NotLoopback { .. }));
        let msg = e.to_string();
        assert!(msg.contains("loopback") && msg.contains("--allow-remote") && msg.contains("example.org"), "{msg}");
        assert!(check_url("http://example.org/iiif/2/x/info.json", "URL", true).is_ok());
        let e = check_url("https://127.0.0.1/iiif/2/x/info.json", "URL", true).unwrap_err();
        assert!(e.to_string().contains("only http"), "{e}");
        assert!(check_url("/iiif/2/x/info.json", "URL", false).is_err());
        assert!(check_url("ftp://127.0.0.1/x", "URL", false).is_err());
    }

    #[test]
    fn reads_image_api_2() {
        let body = br#"{"@context":"http://iiif.io/api/image/2/context.json","@id":"http://127.0.0.1:9/iiif/2/large/",
            "protocol":"http://iiif.io/api/image","width":10000,"height":8000,
            "profile":["http://iiif.io/api/image/2/level2.json"],
            "sizes":[{"width":625,"height":500}],
            "tiles":[{"width":1024,"scaleFactors":[1,2,4,8,16]}]}"#;
        let s = parse_info("http://127.0.0.1:9/iiif/2/large/info.json", body).unwrap();
        assert_eq!(s.version, ApiVersion::V2);
        assert_eq!(s.id, "http://127.0.0.1:9/iiif/2/large");
        assert_eq!((s.width, s.height), (10000, 8000));
        assert_eq!(s.tiles, Some(TileSpec { width: 1024, height: 1024, scale_factors: vec![1, 2, 4, 8, 16] }));
        assert_eq!(s.sizes, vec![(625, 500)]);
    }

    #[test]
    fn reads_image_api_3_and_sizes_only() {
        let body = br#"{"@context":"http://iiif.io/api/image/3/context.json","id":"http://localhost:9/iiif/3/l",
            "type":"ImageService3","protocol":"http://iiif.io/api/image","profile":"level1",
            "width":6000,"height":4000,"sizes":[{"width":375,"height":250},{"width":750,"height":500}]}"#;
        let s = parse_info("http://localhost:9/iiif/3/l/info.json", body).unwrap();
        assert_eq!(s.version, ApiVersion::V3);
        assert_eq!(s.id, "http://localhost:9/iiif/3/l");
        assert_eq!(s.tiles, None);
        assert_eq!(s.sizes.len(), 2);
    }

    #[test]
    fn rejects_what_is_not_info_json() {
        assert!(parse_info("u", b"<html>").is_err());
        assert!(parse_info(
            "u",
            br#"{"@context":"http://iiif.io/api/image/2/context.json","@id":"x","width":0,"height":5}"#
        )
        .is_err());
        assert!(parse_info("u", br#"{"@context":"http://library.stanford.edu/iiif/image-api/1.1/context.json","@id":"x","width":5,"height":5}"#).is_err());
        // No id at all: the URL minus /info.json.
        let s = parse_info(
            "http://127.0.0.1/a/info.json",
            br#"{"@context":"http://iiif.io/api/image/2/context.json","width":5,"height":5}"#,
        )
        .unwrap();
        assert_eq!(s.id, "http://127.0.0.1/a");
    }

    /// Serves `body` once on a loopback port; returns the info.json URL.
    fn serve_once(body: &'static str) -> String {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut c, _)) = l.accept() {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = c.write_all(head.as_bytes());
                let _ = c.write_all(body.as_bytes());
            }
        });
        format!("http://127.0.0.1:{port}/iiif/3/b/info.json")
    }

    #[test]
    fn the_id_named_by_info_json_must_be_loopback_too() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let doc = r#"{"@context":"http://iiif.io/api/image/3/context.json","id":"http://192.0.2.7/iiif/3/b","type":"ImageService3","width":40,"height":30}"#;
        let url = serve_once(doc);
        let e = rt.block_on(load(&url, false, Duration::from_secs(5))).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("image id http://192.0.2.7/iiif/3/b") && msg.contains("loopback"), "{msg}");
        // A proxy-style id on another loopback port is used as is.
        let doc = r#"{"@context":"http://iiif.io/api/image/2/context.json","@id":"http://localhost:1/p/b","width":40,"height":30}"#;
        let url = serve_once(doc);
        let spec = rt.block_on(load(&url, false, Duration::from_secs(5))).unwrap();
        assert_eq!(spec.id, "http://localhost:1/p/b");
    }
}
