//! The echo servers `udp_bench` compares, each run as `--serve KIND` in a
//! child process that prints its port: netloom, the raw mio floor (with
//! and without `recvmmsg`/`sendmmsg`), and tokio with tokio-util's
//! `UdpFramed`. Every server but netloom echoes on one `SO_REUSEPORT`
//! socket per thread, as netloom does on Linux.

use std::io;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

pub fn serve(kind: &str, loops: usize) {
    match kind {
        "netloom" => netloom(loops),
        "floor" => floor(loops, false),
        "floor-mmsg" => floor(loops, true),
        "tokio" => tokio_framed(loops),
        other => panic!("unknown server {other}"),
    }
}

fn netloom(loops: usize) {
    let server = netloom::Server::builder()
        .event_loops(loops)
        .fallback(|ctx| ctx.reply(ctx.msg_id(), ctx.body()))
        .bind_udp("127.0.0.1:0")
        .expect("bind")
        .start()
        .expect("start");
    println!("{}", server.udp_addrs()[0].port());
    let _ = server.join();
}

/// `n` sockets on one port (the first picks it), `SO_REUSEPORT` each.
fn sockets(n: usize) -> Vec<std::net::UdpSocket> {
    let mut at: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut out = Vec::new();
    for _ in 0..n {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.set_reuse_port(true).expect("SO_REUSEPORT");
        s.bind(&at.into()).expect("bind");
        s.set_nonblocking(true).expect("nonblocking");
        let s: std::net::UdpSocket = s.into();
        at = s.local_addr().expect("local_addr");
        out.push(s);
    }
    println!("{}", at.port());
    out
}

fn floor(loops: usize, mmsg: bool) {
    let threads: Vec<_> = sockets(loops)
        .into_iter()
        .map(|s| {
            std::thread::spawn(move || {
                let mut socket = UdpSocket::from_std(s);
                let mut poll = Poll::new().expect("poll");
                poll.registry()
                    .register(&mut socket, Token(0), Interest::READABLE)
                    .expect("register");
                let mut events = Events::with_capacity(64);
                let mut buf = vec![0u8; 65_536];
                let mut batch = mmsg::Batch::new();
                loop {
                    if poll.poll(&mut events, None).is_err() {
                        continue;
                    }
                    if mmsg {
                        while batch.echo(&socket) > 0 {}
                        continue;
                    }
                    loop {
                        match socket.recv_from(&mut buf) {
                            Ok((n, from)) => {
                                let _ = socket.send_to(&buf[..n], from);
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(_) => break,
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// Frames of the default packer (length u32 LE of the body, id u32 LE,
/// body), found by tokio-util's `LengthDelimitedCodec` and sent back as
/// they came.
struct Frames(tokio_util::codec::LengthDelimitedCodec);

impl tokio_util::codec::Decoder for Frames {
    type Item = BytesMut;
    type Error = io::Error;
    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        self.0.decode(src)
    }
}

impl tokio_util::codec::Encoder<Bytes> for Frames {
    type Error = io::Error;
    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> io::Result<()> {
        dst.extend_from_slice(&frame);
        Ok(())
    }
}

fn tokio_framed(loops: usize) {
    use futures_util::{SinkExt, StreamExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(loops)
        .enable_all()
        .build()
        .expect("runtime");
    let sockets = sockets(loops);
    rt.block_on(async move {
        let tasks: Vec<_> = sockets
            .into_iter()
            .map(|s| {
                tokio::spawn(async move {
                    let socket = tokio::net::UdpSocket::from_std(s).expect("tokio socket");
                    let codec = tokio_util::codec::LengthDelimitedCodec::builder()
                        .little_endian()
                        .length_field_length(4)
                        .length_adjustment(8) // the id, and the head kept (num_skip 0)
                        .num_skip(0)
                        .new_codec();
                    let mut framed = tokio_util::udp::UdpFramed::new(socket, Frames(codec));
                    while let Some(next) = framed.next().await {
                        if let Ok((frame, from)) = next {
                            let _ = framed.send((frame.freeze(), from)).await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
}

/// `recvmmsg`/`sendmmsg`: up to 32 datagrams per system call each way.
mod mmsg {
    use std::os::fd::AsRawFd;

    const N: usize = 32;
    const SIZE: usize = 2048;

    pub struct Batch {
        bufs: Vec<[u8; SIZE]>,
        addrs: Vec<libc::sockaddr_storage>,
    }

    impl Batch {
        pub fn new() -> Batch {
            Batch {
                bufs: vec![[0; SIZE]; N],
                // SAFETY: an all-zero sockaddr_storage is a valid value.
                addrs: vec![unsafe { std::mem::zeroed() }; N],
            }
        }

        /// Receive up to N datagrams in one call and send them back in
        /// another; returns how many came.
        pub fn echo(&mut self, socket: &mio::net::UdpSocket) -> usize {
            let fd = socket.as_raw_fd();
            let mut iovs: Vec<libc::iovec> = (self.bufs.iter_mut())
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: SIZE,
                })
                .collect();
            // SAFETY: all-zero mmsghdrs are valid; each is pointed at its
            // own iovec and address, which outlive both calls.
            let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; N];
            for i in 0..N {
                msgs[i].msg_hdr.msg_iov = &mut iovs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_name =
                    (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            }
            // SAFETY: `msgs` holds N valid headers as set up above.
            let got = unsafe {
                libc::recvmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    N as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if got <= 0 {
                return 0;
            }
            let got = got as usize;
            for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()).take(got) {
                iov.iov_len = m.msg_len as usize;
                m.msg_hdr.msg_iov = iov;
            }
            // SAFETY: the first `got` headers name what was just received.
            unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), got as u32, libc::MSG_DONTWAIT) };
            got
        }
    }
}
