//! A fault-injecting TCP proxy for WebSocket connections: it forwards bytes both ways and, when
//! told to, cuts the connection right after the Nth WebSocket frame from the server (so a test can
//! break a scripted exchange at every frame boundary), or swallows chosen server frames (so a real
//! server behind it becomes a deliberately broken one).

use std::net::SocketAddr;
use std::sync::Arc;

use confab_protocol::v1;
use prost::Message as _;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A proxy that serves one connection at a time; dropping it stops it.
#[derive(Debug)]
pub struct CutProxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Length of the complete WebSocket frame at the start of `buf`, if it is all there.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let b1 = *buf.get(1)?;
    let masked = b1 & 0x80 != 0;
    let (len, mut header) = match b1 & 0x7f {
        126 => (u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])), 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    if masked {
        header += 4;
    }
    let total = header + usize::try_from(len).ok()?;
    (buf.len() >= total).then_some(total)
}

/// Decides, per server frame, whether the proxy forwards it.
pub type FrameFilter = Arc<dyn Fn(&v1::ServerFrame) -> bool + Send + Sync>;

/// What the proxy does to the server's side of each connection.
#[derive(Clone)]
enum Fault {
    /// Close right after the server's nth WebSocket frame (`None`: never).
    CutAfter(Option<usize>),
    /// Forward only the server frames the filter keeps.
    Filter(FrameFilter),
}

impl CutProxy {
    /// Proxies to `upstream`; with `cut_after = Some(n)`, every connection is closed right after
    /// the server's nth WebSocket frame (the HTTP upgrade answer does not count).
    pub async fn start(upstream: SocketAddr, cut_after: Option<usize>) -> std::io::Result<Self> {
        Self::spawn(upstream, Fault::CutAfter(cut_after)).await
    }

    /// Proxies to `upstream`, forwarding only the server frames `keep` accepts: the server behind
    /// it then breaks the protocol in exactly that way (frames that do not decode are forwarded).
    pub async fn filtering(upstream: SocketAddr, keep: FrameFilter) -> std::io::Result<Self> {
        Self::spawn(upstream, Fault::Filter(keep)).await
    }

    async fn spawn(upstream: SocketAddr, fault: Fault) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                tokio::spawn(relay(client, server, fault.clone()));
            }
        });
        Ok(Self { addr, task })
    }
}

/// The payload of the complete, unmasked server frame `frame` (as framed by [`frame_len`]).
fn payload(frame: &[u8]) -> &[u8] {
    let header = match frame[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    &frame[header..]
}

/// Whether the proxy passes this server WebSocket frame on.
fn forwards(fault: &Fault, frame: &[u8]) -> bool {
    match fault {
        Fault::CutAfter(_) => true,
        // Only binary messages carry Confab frames; control frames and close frames pass.
        Fault::Filter(keep) => {
            frame[0] & 0x0f != 0x2 || v1::ServerFrame::decode(payload(frame)).map_or(true, |f| keep(&f))
        }
    }
}

async fn relay(client: TcpStream, server: TcpStream, fault: Fault) {
    let cut_after = match &fault {
        Fault::CutAfter(n) => *n,
        Fault::Filter(_) => None,
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    });
    let mut buf = Vec::new();
    let mut upgraded = false;
    let mut frames = 0usize;
    let mut chunk = [0u8; 8192];
    'outer: loop {
        let n = match sr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if !upgraded {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            if cw.write_all(&buf[..end + 4]).await.is_err() {
                break;
            }
            buf.drain(..end + 4);
            upgraded = true;
        }
        while let Some(len) = frame_len(&buf) {
            if forwards(&fault, &buf[..len]) && cw.write_all(&buf[..len]).await.is_err() {
                break 'outer;
            }
            buf.drain(..len);
            frames += 1;
            if cut_after == Some(frames) {
                break 'outer;
            }
        }
    }
    // Cut (or the server ended): drop both directions.
    upstream.abort();
    let _ = cw.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::frame_len;

    #[test]
    fn frame_lengths() {
        assert_eq!(frame_len(&[0x82, 3, 1, 2, 3]), Some(5));
        assert_eq!(frame_len(&[0x82, 3, 1, 2]), None);
        let mut f = vec![0x82, 126, 0x01, 0x00];
        f.extend(vec![0; 256]);
        assert_eq!(frame_len(&f), Some(260));
        assert_eq!(frame_len(&[0x82, 0x83, 9, 9, 9, 9, 1, 2, 3]), Some(9), "masked");
    }
}
