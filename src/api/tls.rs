//! HTTPS with client certificates, as LXD does it (`decisions.md` §7): a server
//! certificate generated into the state dir on first start; the handshake takes any
//! client certificate, or none (proof of the key is still checked); a request gets in
//! only when the certificate is one of the PEM files in `<state dir>/trust/`. Others
//! get 403, and `GET /1.0` answers `auth: "untrusted"` only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde_json::json;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{self, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tracing::{info, warn};

use super::{response, ApiError, API_EXTENSIONS};

/// Who is on the other end of an HTTPS connection: its certificate, checked against the
/// trust list on every request (so a certificate removed from `trust/` stops working on
/// connections already open).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's certificate, if it presented one.
    pub cert: Option<Arc<CertificateDer<'static>>>,
    /// The trust list.
    pub trust: Arc<TrustList>,
}

impl Peer {
    /// Whether the certificate is in the trust list and in date, now.
    pub fn trusted(&self) -> bool {
        self.cert.as_ref().is_some_and(|c| self.trust.trusts(c))
    }
}

/// The certificates of a trust directory, read again when the directory changes (a file
/// added or removed changes its mtime) and at least every [`TrustList::MAX_AGE`] (a file
/// rewritten in place): a request costs one `stat`, not a read of every file.
#[derive(Debug)]
pub struct TrustList {
    dir: PathBuf,
    /// (directory mtime, when read, the certificates with their files).
    cache: std::sync::Mutex<Option<TrustCache>>,
}

type TrustCache = (
    Option<std::time::SystemTime>,
    std::time::Instant,
    Vec<(PathBuf, CertificateDer<'static>)>,
);

impl TrustList {
    /// Longest a read of the directory is used while its mtime stays the same.
    pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(2);

    /// The trust list of the PEM files in `dir`.
    pub fn new(dir: PathBuf) -> TrustList {
        TrustList {
            dir,
            cache: std::sync::Mutex::new(None),
        }
    }

    fn read(&self) -> Vec<(PathBuf, CertificateDer<'static>)> {
        use rustls_pki_types::pem::PemObject;
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            if let Ok(it) = CertificateDer::pem_file_iter(e.path()) {
                out.extend(it.flatten().map(|c| (e.path(), c)));
            }
        }
        out
    }

    /// Whether `cert` is listed and in date (as LXD's `certificateInDate`: an expired or
    /// not yet valid certificate is refused even when listed).
    pub fn trusts(&self, cert: &CertificateDer<'_>) -> bool {
        let mtime = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        let file = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = cache
                .as_ref()
                .is_some_and(|(m, at, _)| *m == mtime && at.elapsed() < Self::MAX_AGE);
            if !fresh {
                *cache = Some((mtime, std::time::Instant::now(), self.read()));
            }
            cache.as_ref().and_then(|(_, _, certs)| {
                certs
                    .iter()
                    .find(|(_, c)| c.as_ref() == cert.as_ref())
                    .map(|(p, _)| p.clone())
            })
        };
        let Some(file) = file else {
            return false;
        };
        let in_date = x509_parser::parse_x509_certificate(cert.as_ref())
            .is_ok_and(|(_, c)| c.validity().is_valid());
        if !in_date {
            warn!(
                file = %file.display(),
                "a client presented a trusted certificate that is expired or not yet valid: refused"
            );
        }
        in_date
    }
}

/// The server certificate and key in `dir` (`server.crt`, `server.key`), generated
/// (self-signed, for `localhost`, the loopback addresses and the host name) when absent.
///
/// # Errors
/// When they cannot be read or written.
pub fn server_cert(dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
    if crt.exists() && key.exists() {
        return Ok((crt, key));
    }
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_owned());
        }
    }
    let cert = rcgen::generate_simple_self_signed(names)
        .map_err(|e| std::io::Error::other(format!("generating the server certificate: {e}")))?;
    std::fs::write(&crt, cert.cert.pem())?;
    // Created 0600: the key is never readable by others, not even for a moment.
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(cert.signing_key.serialize_pem().as_bytes())?;
    }
    info!(cert = %crt.display(), "generated the server certificate");
    Ok((crt, key))
}

/// Accepts any client certificate (trust is decided per request against the trust
/// list), but checks the handshake signature: the client must hold the key.
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The server's TLS configuration from PEM files.
///
/// # Errors
/// Unreadable or unusable files, named.
pub fn server_config(crt: &Path, key: &Path) -> std::io::Result<Arc<rustls::ServerConfig>> {
    let bad = |p: &Path, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("{}: {e}", p.display()))
    };
    let chain: Vec<CertificateDer<'static>> = {
        use rustls_pki_types::pem::PemObject;
        CertificateDer::pem_file_iter(crt)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| bad(crt, &e))?
    };
    let key = {
        use rustls_pki_types::pem::PemObject;
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .with_client_cert_verifier(Arc::new(AnyClientCert { provider }))
        .with_single_cert(chain, key)
        .map_err(|e| bad(crt, &e))?;
    Ok(Arc::new(cfg))
}

/// Middleware: requests over HTTPS from untrusted clients get 403, except `GET /1.0`,
/// which answers the untrusted view. Requests without a [`Peer`] (the unix socket) pass.
pub async fn guard(req: Request, next: Next) -> Response {
    match req.extensions().get::<Peer>() {
        Some(p) if !p.trusted() => {
            let p = req.uri().path();
            if req.method() == axum::http::Method::GET && (p == "/1.0" || p == "/1.0/") {
                response::sync(json!({
                    "api_extensions": API_EXTENSIONS,
                    "api_status": "stable",
                    "api_version": "1.0",
                    "auth": "untrusted",
                    "auth_methods": ["tls"],
                    "public": false,
                }))
            } else {
                ApiError::new(axum::http::StatusCode::FORBIDDEN, "not authorized").into_response()
            }
        }
        _ => next.run(req).await,
    }
}
