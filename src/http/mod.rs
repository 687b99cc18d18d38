//! HTTP helpers the handlers share, apart from the server that carries
//! them (the `server` module): the CORS policy (`cors`), the public base URL from
//! configuration or forwarded headers (`base_url`), and which peers may send
//! forwarded headers at all (`trust`). They know nothing of IIIF.

pub mod base_url;
pub mod cors;
pub mod trust;
