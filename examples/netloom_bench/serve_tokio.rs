//! The tokio servers of `serve`: the echo (`tokio`), the echo answered
//! from `spawn_blocking` (`tokio-blocking`, `serve_exec.rs`) and the JSON
//! echo (`tokio-json`, `serve_json.rs`), all on tokio-util `Framed` with
//! `serve::FrameCodec`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::serve::FrameCodec;

/// What a tokio server does with each frame.
#[derive(Clone, Copy)]
pub enum Tokio {
    /// Echo it (`tokio`).
    Echo,
    /// Answer it from `spawn_blocking` on this many blocking threads
    /// (`tokio-blocking`).
    Blocking(usize),
    /// Decode its JSON and answer with the value encoded again
    /// (`tokio-json`).
    Json,
}

/// The tokio echo server, doing `mode` with each frame.
pub fn tokio_server(addr: SocketAddr, loops: usize, mode: Tokio) -> io::Result<SocketAddr> {
    let blocking = match mode {
        Tokio::Blocking(n) => Some(n),
        _ => None,
    };
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let mut rt = if loops <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(loops);
        b
    };
    if let Some(n) = blocking {
        rt.max_blocking_threads(n);
    }
    let rt = rt.enable_io().build()?;
    std::thread::Builder::new()
        .name("tokio-main".into())
        .spawn(move || {
            let r: io::Result<()> = rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener)?;
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            match mode {
                                Tokio::Echo => tokio::spawn(tokio_echo(stream)),
                                Tokio::Blocking(_) => {
                                    tokio::spawn(crate::serve_exec::blocking_echo(stream))
                                }
                                #[cfg(feature = "json")]
                                Tokio::Json => tokio::spawn(crate::serve_json::tokio_json(stream)),
                                #[cfg(not(feature = "json"))]
                                Tokio::Json => {
                                    return Err(io::Error::other(
                                        "tokio-json needs --features json",
                                    ))
                                }
                            };
                        }
                        // EMFILE: back off a little instead of spinning.
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
            if let Err(e) = r {
                eprintln!("tokio server: {e}");
                std::process::exit(2);
            }
        })?;
    Ok(local)
}

async fn tokio_echo(stream: tokio::net::TcpStream) {
    use futures_util::{FutureExt, SinkExt, StreamExt};
    let mut framed = tokio_util::codec::Framed::new(stream, FrameCodec);
    while let Some(Ok(frame)) = framed.next().await {
        if framed.feed(frame).await.is_err() {
            return;
        }
        // Frames already buffered: answer them all, then flush once.
        loop {
            match framed.next().now_or_never() {
                Some(Some(Ok(frame))) => {
                    if framed.feed(frame).await.is_err() {
                        return;
                    }
                }
                Some(_) => {
                    let _ = framed.flush().await;
                    return;
                }
                None => break,
            }
        }
        if framed.flush().await.is_err() {
            return;
        }
    }
}
