//! HTTP helpers the handlers share, apart from the server that carries
//! them (the `server` module): the CORS policy (`cors`), the public base URL from
//! configuration or forwarded headers (`base_url`), which peers may send
//! forwarded headers at all (`trust`), and the header rules every response
//! follows: conditional GET, one `Vary` line, JSON-LD negotiation
//! (`headers`). They know nothing of IIIF. (Named `web` so that it does not
//! shadow the `http` crate.)

pub mod access;
pub mod base_url;
pub mod cors;
pub mod headers;
pub mod trust;
