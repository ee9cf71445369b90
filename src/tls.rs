//! TLS material shared by every client of ours: the files of a CA, a certificate and its
//! key, and the rustls client configuration built from them. Used by the OVSDB client
//! (`ssl:` remotes) and by the CLI (ovnlbd over HTTPS). A leaf: it knows no module of
//! ours.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// TLS material of a client: the CA that signs servers, and our certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM CA certificate(s) trusted for the server.
    pub ca: PathBuf,
    /// PEM client certificate (chain); ovsdb-server with `--ca-cert` requires one.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the client certificate.
    pub key: Option<PathBuf>,
}

/// Why TLS files gave no configuration: the message names the file and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn certs(what: &str, path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{what} {}: no certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// Build a rustls client configuration from PEM files.
///
/// # Errors
/// A [`TlsError`] naming the file that cannot be read or holds nothing usable.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs("CA file", &files.ca)? {
        roots
            .add(c)
            .map_err(|e| TlsError(format!("CA file {}: {e}", files.ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots);
    let cfg = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = certs("certificate file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| TlsError(format!("private key file {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError(format!("client certificate/key: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsError(
                "a client certificate needs both a cert and a key file".into(),
            ))
        }
    };
    Ok(Arc::new(cfg))
}
