//! Where and how to connect: remotes as `ovn-nbctl --db` takes them, TLS files, timers.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::error::Error;

/// One server address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Remote {
    /// `tcp:IP:PORT` (IPv6 in brackets).
    Tcp(SocketAddr),
    /// `ssl:IP:PORT`.
    Ssl(SocketAddr),
    /// `unix:PATH`.
    Unix(PathBuf),
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remote::Tcp(a) => write!(f, "tcp:{a}"),
            Remote::Ssl(a) => write!(f, "ssl:{a}"),
            Remote::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

fn parse_addr(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    // `IP:PORT`, `[IPv6]:PORT`, or a bare IP (OVS's default port 6641 for NB).
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    Err(format!(
        "{s:?} is not IP:PORT (IPv6 as [ADDR]:PORT; names are not resolved)"
    ))
}

impl FromStr for Remote {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let bad = |why: String| Error::Config(format!("remote {s:?}: {why}"));
        if let Some(rest) = s.strip_prefix("tcp:") {
            parse_addr(rest, 6641).map(Remote::Tcp).map_err(bad)
        } else if let Some(rest) = s.strip_prefix("ssl:") {
            parse_addr(rest, 6641).map(Remote::Ssl).map_err(bad)
        } else if let Some(rest) = s.strip_prefix("unix:") {
            if rest.is_empty() {
                return Err(bad("empty path".into()));
            }
            Ok(Remote::Unix(PathBuf::from(rest)))
        } else {
            Err(bad("expected tcp:IP:PORT, ssl:IP:PORT or unix:PATH".into()))
        }
    }
}

/// Parse a comma-separated remote list (`tcp:IP:PORT,ssl:IP:PORT,unix:PATH`).
///
/// # Errors
/// [`Error::Config`] naming the entry that does not parse, or an empty list.
pub fn parse_remotes(s: &str) -> Result<Vec<Remote>, Error> {
    let v: Vec<Remote> = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err(Error::Config("no remote given".into()));
    }
    Ok(v)
}

pub use crate::tls::TlsFiles;

/// Per-connection settings.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// TLS files, required for `ssl:` remotes.
    pub tls: Option<TlsFiles>,
    /// Time allowed to connect (and handshake).
    pub connect_timeout: Duration,
    /// Each request fails after this long without reply (a write hangs forever without
    /// quorum otherwise).
    pub request_timeout: Duration,
    /// After this long without receiving anything, send an `echo`; if nothing arrives in
    /// another interval, drop the connection. `None` disables probing.
    pub probe_interval: Option<Duration>,
    /// Largest message accepted.
    pub max_message: usize,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            tls: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            probe_interval: Some(Duration::from_secs(5)),
            max_message: super::codec::DEFAULT_MAX_MESSAGE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes() {
        let r = parse_remotes("tcp:127.0.0.1:6641,ssl:[::1]:6643, unix:/run/ovn/nb.sock").unwrap();
        assert_eq!(r[0], Remote::Tcp("127.0.0.1:6641".parse().unwrap()));
        assert_eq!(r[1], Remote::Ssl("[::1]:6643".parse().unwrap()));
        assert_eq!(r[2], Remote::Unix("/run/ovn/nb.sock".into()));
        assert_eq!(r[1].to_string(), "ssl:[::1]:6643");
        assert_eq!(
            "tcp:10.0.0.1".parse::<Remote>().unwrap(),
            Remote::Tcp("10.0.0.1:6641".parse().unwrap())
        );
        let e = "tcp:host:1".parse::<Remote>().unwrap_err().to_string();
        assert!(e.contains("tcp:host:1"), "{e}");
        assert!("http://x".parse::<Remote>().is_err());
        assert!(parse_remotes("").is_err());
        assert!("unix:".parse::<Remote>().is_err());
    }
}
