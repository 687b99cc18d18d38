//! The error type of the request pipeline: every failure carries the HTTP status
//! it maps to and a short public message that is safe to show a client.
//!
//! Architecture invariant: a public message never contains a file path, a
//! decoder's internal message or any other detail of the host. Such detail goes
//! into `detail`, which is only logged.

use std::borrow::Cow;
use std::fmt;

use http::StatusCode;

/// A pipeline failure with its HTTP status and a public message.
#[derive(Clone)]
pub struct Error {
    status: StatusCode,
    public: Cow<'static, str>,
    detail: Option<String>,
    retry_after: Option<u32>,
    /// The source changed (or was given up) while it was read: reading it
    /// afresh may succeed.
    changed: bool,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn new(status: StatusCode, public: impl Into<Cow<'static, str>>) -> Self {
        Error { status, public: public.into(), detail: None, retry_after: None, changed: false }
    }

    /// 400: the request is malformed (bad region, size, rotation, quality...).
    pub fn bad_request(public: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, public)
    }
    /// 404: no such image (or an identifier that may not be resolved).
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "No image with this identifier")
    }
    /// 404 with a specific message.
    pub fn not_found_msg(public: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, public)
    }
    /// 405: method not allowed.
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
    }
    /// 415: the output format is understood but not produced by this server.
    pub fn unsupported_format(public: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, public)
    }
    /// 501: a valid request for a feature this server does not implement
    /// (or a source whose pixel format it cannot read).
    pub fn not_implemented(public: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, public)
    }
    /// 422: the source file could not be decoded (damaged, truncated past
    /// repair, hostile), as imgproxy answers a broken source: the request
    /// was well formed, the stored file is what fails. The public message
    /// stays generic; the detail goes to the log.
    pub fn undecodable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "The source image could not be decoded").with_detail(detail)
    }
    /// 500: something failed that is not the client's fault.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error").with_detail(detail)
    }
    /// 503 with `Retry-After`: the work queue is full.
    pub fn overloaded(retry_after_secs: u32) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "Server busy, try again shortly");
        e.retry_after = Some(retry_after_secs);
        e
    }
    /// 503 with `Retry-After: 1`: the source file changed while it was read
    /// (see `source::mmap`); a retry reads the new file.
    pub fn source_changed() -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "The source image changed while it was read, retry");
        e.retry_after = Some(1);
        e.changed = true;
        e
    }
    /// 499-like: every client waiting for this work has gone, so it was not
    /// started. Nobody receives it; it is counted and logged at debug level.
    pub fn abandoned() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "Request abandoned by its client")
    }
    /// 401/403 and others from an upstream, carried through.
    pub fn with_status(status: StatusCode, public: impl Into<Cow<'static, str>>) -> Self {
        Self::new(status, public)
    }

    /// Attaches detail for the log (never sent to the client).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
    pub fn public_message(&self) -> &str {
        &self.public
    }
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
    }
    /// Whether this is [`Error::source_changed`]: the server retries such a
    /// request once itself before answering it.
    pub fn is_source_changed(&self) -> bool {
        self.changed
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.public)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.public)
    }
}

impl std::error::Error for Error {}
