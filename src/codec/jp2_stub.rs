//! Temporary stand-in for the OpenJPEG wrapper (replaced by jp2.rs).
use crate::pixels::Pixels;
#[derive(Debug, thiserror::Error)]
pub enum Jp2Error {
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("too large")]
    TooLarge { pixels: u64, limit: u64 },
    #[error("corrupt")]
    Corrupt(String),
}
pub enum Container {
    Jp2,
    J2k,
}
pub struct Jp2Info {
    pub width: u32,
    pub height: u32,
    pub components: u32,
    pub levels: u32,
    pub tile_width: u32,
    pub tile_height: u32,
    pub tiles_x: u32,
    pub tiles_y: u32,
    pub has_alpha: bool,
}
pub struct DecodeArea {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}
pub fn sniff(_d: &[u8]) -> Option<Container> {
    None
}
pub fn probe(_d: &[u8]) -> Result<Jp2Info, Jp2Error> {
    Err(Jp2Error::Unsupported("jp2".into()))
}
pub fn decode(_d: &[u8], _a: DecodeArea, _r: u32, _m: u64) -> Result<Pixels, Jp2Error> {
    Err(Jp2Error::Unsupported("jp2".into()))
}
