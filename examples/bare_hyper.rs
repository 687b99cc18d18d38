//! The baseline of the hot-tile benchmark (benches/hot_tiles.sh): a bare hyper
//! 1.x server answering every request with the same body of N bytes, as fast
//! as hyper can. `cargo run --release --example bare_hyper -- 127.0.0.1:PORT BYTES`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{header, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18300".into());
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let body = Bytes::from(vec![0x55u8; size]);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req| {
                let body = body.clone();
                async move {
                    let mut r = Response::new(Full::new(body));
                    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("image/jpeg"));
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
