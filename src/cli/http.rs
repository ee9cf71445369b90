//! The CLI's HTTP client: HTTP/1.1 over the daemon's unix socket, or HTTPS with a
//! client certificate (one connection per request, as lxc does), decoding LXD's envelope.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon is not there.
    #[error("cannot reach ovnlbd at {path}: {source}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// HTTP failed.
    #[error("talking to ovnlbd: {0}")]
    Http(String),
    /// The daemon answered with an error envelope: its message.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
}

/// One response: status, `ETag` (quotes kept), and the envelope's `metadata`.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// `ETag`, verbatim.
    pub etag: Option<String>,
    /// `Location`.
    pub location: Option<String>,
    /// `metadata` of a sync envelope.
    pub metadata: Value,
}

/// Where the daemon is.
#[derive(Clone)]
enum Transport {
    Unix(PathBuf),
    Https {
        /// `host:port`.
        addr: String,
        /// The name the server certificate must carry.
        name: rustls_pki_types::ServerName<'static>,
        tls: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    },
}

/// A client of one daemon.
#[derive(Clone)]
pub struct Client {
    transport: Transport,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Client {
    /// A client of the socket at `path`.
    pub fn unix(path: impl AsRef<Path>) -> Client {
        Client {
            transport: Transport::Unix(path.as_ref().to_owned()),
        }
    }

    /// A client of `https://host:port`, verifying the server against `files.ca` and
    /// presenting `files.cert`/`files.key`.
    ///
    /// # Errors
    /// A URL that is not `https://host:port`, unreadable or unusable files.
    pub fn https(url: &str, files: &crate::tls::TlsFiles) -> Result<Client, ClientError> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| ClientError::Http(format!("{url}: only https:// remotes")))?
            .trim_end_matches('/');
        let host = match rest.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            _ => return Err(ClientError::Http(format!("{url}: give https://host:port"))),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let name = rustls_pki_types::ServerName::try_from(host)
            .map_err(|e| ClientError::Http(format!("{url}: {e}")))?;
        let tls = crate::tls::client_config(files).map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Client {
            transport: Transport::Https {
                addr: rest.to_owned(),
                name,
                tls,
            },
        })
    }

    fn describe(&self) -> String {
        match &self.transport {
            Transport::Unix(p) => p.display().to_string(),
            Transport::Https { addr, .. } => format!("https://{addr}"),
        }
    }

    /// Send a request and read the whole response: (status, headers, body).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), ClientError> {
        let connect_err = |source| ClientError::Connect {
            path: PathBuf::from(self.describe()),
            source,
        };
        let mut sender = match &self.transport {
            Transport::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(connect_err)?;
                handshake(s).await?
            }
            Transport::Https { addr, name, tls } => {
                let tcp = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(connect_err)?;
                let s = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| ClientError::Http(format!("TLS with {addr}: {e}")))?;
                handshake(s).await?
            }
        };
        let bytes = match body {
            Some(v) => {
                Bytes::from(serde_json::to_vec(v).map_err(|e| ClientError::Http(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(
                "Host",
                match &self.transport {
                    Transport::Unix(_) => "unix.socket".to_owned(),
                    Transport::Https { addr, .. } => addr.clone(),
                },
            )
            .header("User-Agent", concat!("ovnlb/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            req = req.header("Content-Type", "application/json");
        }
        if let Some(m) = if_match {
            req = req.header("If-Match", m);
        }
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    /// A `GET` of a non-JSON resource (e.g. `/1.0/metrics`): status and text.
    ///
    /// # Errors
    /// Connection or HTTP.
    pub async fn text(&self, path: &str) -> Result<(StatusCode, String), ClientError> {
        let (status, _, body) = self.send(Method::GET, path, None, None).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Send a request; `body` is JSON. Error envelopes become [`ClientError::Api`].
    ///
    /// # Errors
    /// Connection, HTTP, or the server's error.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, ClientError> {
        let (status, headers, body) = self.send(method, path, body, if_match).await?;
        let header = |h: &str| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (etag, location) = (header("etag"), header("location"));
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Http(format!("{status}: not a JSON response ({e})")))?;
        if v.get("type").and_then(Value::as_str) == Some("error") {
            let message = v
                .get("error")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
            });
        }
        Ok(Reply {
            status,
            etag,
            location,
            metadata: v.get("metadata").cloned().unwrap_or(Value::Null),
        })
    }

    /// `GET`.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.request(Method::GET, path, None, None).await
    }
}

/// HTTP/1.1 over any stream; the connection runs in its own task.
async fn handshake<T>(
    io: T,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ClientError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
