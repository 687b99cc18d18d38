//! Tessera: a IIIF Image API 2.1.1 / 3.0 server.
//!
//! A request flows top-down through these modules:
//! [`iiif`] (parse, version-neutral) → [`source`] (resolve, memory-map) →
//! [`plan`] (pure: region, reduce factor, size, limits, canonical form) →
//! [`cache`] (encoded tiles; [`flight`]: one render per key) → the disk
//! tier → [`decoded`] units ([`eager`] tiling) → [`render`] on the [`pool`]
//! ([`codec`] decode → [`transform`] → [`codec::encode`]) → [`service`]
//! (respond), reached through [`router`] from [`server`]. Deep Zoom and
//! Zoomify tiles ([`zoom_protocols`]) become Image API requests of the same
//! region and size. See docs/ARCHITECTURE.md.
//!
//! `unsafe` is denied crate-wide; the modules that wrap C libraries or
//! system calls allow it, each use documented with a `SAFETY` comment:
//! `source::mmap`, `source::http` (`flock`), `codec::jpeg`, `codec::jp2`,
//! `server` (`setrlimit`) and `socket_activation` (the handed-over socket).

#![deny(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod cli;
pub mod codec;
pub mod config;
pub mod decoded;
pub mod eager;
pub mod error;
pub mod faults;
pub mod flight;
pub mod iiif;
pub mod loadtest;
pub mod logging;
pub mod manifests;
pub mod metrics;
pub mod model;
pub mod pages;
pub mod pipeline;
pub mod pixels;
pub mod plan;
pub mod pool;
pub mod presentation;
pub mod render;
pub mod router;
pub mod samples;
pub mod server;
pub mod service;
#[allow(unsafe_code)] // The handed-over descriptor taken, checked (getsockopt) and marked close-on-exec.
pub mod socket_activation;
pub mod source;
pub mod state;
pub mod tile_walk;
pub mod transform;
pub mod warm;
pub mod web;
pub mod zoom_protocols;
