//! Closing a TCP connection without losing what was last written to it.
//!
//! A socket closed while bytes the peer sent are still unread makes the kernel answer with a
//! reset instead of a FIN, and a reset may make the peer throw away what it had received but not
//! yet read: an HTTP refusal of an upgrade (hyper answers bytes sent right behind the request
//! as a bad next request, then closes), or the last frames of a WebSocket. So every connection
//! is closed gently: its write side is shut (FIN), and what still arrives is read and dropped
//! until the peer closes too or [`LINGER`] has passed; only then is the socket let go.
//! (The WebSocket layer does the same one level up, for the close handshake: `conn::socket`.)

use axum::serve::Listener;
use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Longest a closed connection is read for its peer's close.
pub const LINGER: Duration = Duration::from_secs(2);

/// A listener whose connections linger when they are dropped (see the module).
pub struct Lingering<L>(pub L);

impl<L: Listener> Listener for Lingering<L> {
    type Io = Gentle<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (Gentle(Some(io)), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection that, dropped, shuts its write side and reads until its peer closes or
/// [`LINGER`] has passed, in a task of its own.
pub struct Gentle<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(Option<T>);

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Gentle<T> {
    /// The connection itself (to set its options).
    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.0.as_mut()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for Gentle<T> {
    fn drop(&mut self) {
        let Some(mut io) = self.0.take() else { return };
        // Outside a runtime (a test's teardown) it is closed at once.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _ = tokio::time::timeout(LINGER, async {
                let _ = io.shutdown().await;
                let mut unread = [0u8; 512];
                while matches!(io.read(&mut unread).await, Ok(n) if n > 0) {}
            })
            .await;
        });
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Gentle<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.0.as_mut() {
            Some(io) => Pin::new(io).poll_read(cx, buf),
            // Only once dropped, and then nothing reads it: an end.
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Gentle<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.0.as_mut() {
            Some(io) => Pin::new(io).poll_write(cx, buf),
            None => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.0.as_mut() {
            Some(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.0.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.as_mut() {
            Some(io) => Pin::new(io).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}
