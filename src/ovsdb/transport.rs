//! Byte streams to a server: TCP (nodelay), unix sockets and TLS (rustls, the server
//! always verified against the configured CA).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use super::config::{ConnectConfig, Remote};
use super::error::Error;
use crate::tls::TlsFiles;

/// A connected stream of any supported kind.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// Unix domain socket.
    Unix(UnixStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Build a rustls client configuration from PEM files ([`crate::tls::client_config`]).
///
/// # Errors
/// [`Error::Tls`] naming the file that cannot be read or holds nothing usable.
pub fn tls_client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, Error> {
    crate::tls::client_config(files).map_err(|e| Error::Tls(e.0))
}

/// Connect to one remote.
///
/// # Errors
/// [`Error::Io`] (refused, timed out), [`Error::Tls`] (handshake: wrong CA, certificate
/// refused), [`Error::Config`] (an `ssl:` remote without TLS files).
pub(crate) async fn connect(remote: &Remote, cfg: &ConnectConfig) -> Result<Stream, Error> {
    let what = format!("connecting to {remote}");
    let fut = async {
        match remote {
            Remote::Tcp(addr) => {
                let s = TcpStream::connect(addr)
                    .await
                    .map_err(|e| Error::io(&what, e))?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            Remote::Unix(path) => Ok(Stream::Unix(
                UnixStream::connect(path)
                    .await
                    .map_err(|e| Error::io(&what, e))?,
            )),
            Remote::Ssl(addr) => {
                let files = cfg.tls.as_ref().ok_or_else(|| {
                    Error::Config(format!(
                        "{remote} needs a CA (and usually a client certificate and key)"
                    ))
                })?;
                let tls = tls_client_config(files)?;
                let s = TcpStream::connect(addr)
                    .await
                    .map_err(|e| Error::io(&what, e))?;
                let _ = s.set_nodelay(true);
                let name = ServerName::IpAddress(addr.ip().into());
                let s = TlsConnector::from(tls)
                    .connect(name, s)
                    .await
                    .map_err(|e| Error::Tls(format!("handshake with {remote}: {e}")))?;
                Ok(Stream::Tls(Box::new(s)))
            }
        }
    };
    match tokio::time::timeout(cfg.connect_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::io(
            what,
            std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
        )),
    }
}
