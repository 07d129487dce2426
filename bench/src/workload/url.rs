//! The one URL form the client accepts: `http://IP:PORT/path`, an IP literal and no DNS, so a
//! probe never waits on a resolver while the VIP moves.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `http://` (https and other schemes are not spoken).
    #[error("only http:// URLs are supported, got {0:?}")]
    Scheme(String),
    /// `user@host` forms.
    #[error("user information (user@) is not supported")]
    UserInfo,
    /// Anything that is not an IPv4 or bracketed IPv6 literal.
    #[error("host must be an IP address (no DNS), e.g. http://192.168.0.200:3000/, got {0:?}")]
    Host(String),
    /// A port that is not a number in 1..=65535.
    #[error("port must be a number in 1..=65535, got {0:?}")]
    Port(String),
    /// Whitespace or control characters in the path.
    #[error("path contains whitespace or control characters")]
    Path,
}

/// A parsed `http://IP:PORT/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Request target: the path with its query, `/` if the URL had none; fragments dropped.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://IP[:PORT][/path]`; the port defaults to 80, the path to `/`.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(UrlError::Scheme(s.to_owned()));
        };
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(UrlError::Scheme(scheme.to_owned()));
        }
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (ip, port) = split_host_port(authority)?;
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(UrlError::Port(p.to_owned())),
            },
        };
        let path = path.split('#').next().unwrap_or_default();
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Path);
        }
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            path,
        })
    }
}

/// `1.2.3.4:80`, `1.2.3.4`, `[::1]:80`, `[::1]` into the address and the port text.
fn split_host_port(authority: &str) -> Result<(IpAddr, Option<&str>), UrlError> {
    let bad = || UrlError::Host(authority.to_owned());
    if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
        let ip: Ipv6Addr = inside.parse().map_err(|_| bad())?;
        let port = match after {
            "" => None,
            a => Some(a.strip_prefix(':').ok_or_else(bad)?),
        };
        return Ok((IpAddr::V6(ip), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    // Only dotted-quad IPv4 here; bare IPv6 must be bracketed to tell its colons from the port.
    let ip: std::net::Ipv4Addr = host.parse().map_err(|_| bad())?;
    Ok((IpAddr::V4(ip), port))
}

impl FromStr for HttpUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.addr, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> HttpUrl {
        HttpUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn accepts_ip_literal_urls() {
        let u = ok("http://192.168.0.200:3000/");
        assert_eq!(u.addr, "192.168.0.200:3000".parse().unwrap());
        assert_eq!(u.path, "/");
        assert_eq!(u.to_string(), "http://192.168.0.200:3000/");

        let u = ok("HTTP://10.0.0.1:8080/health?x=1#frag");
        assert_eq!(u.addr, "10.0.0.1:8080".parse().unwrap());
        assert_eq!(u.path, "/health?x=1");

        assert_eq!(ok("http://10.0.0.1").addr.port(), 80);
        assert_eq!(ok("http://10.0.0.1").path, "/");
        assert_eq!(ok("http://10.0.0.1:3000?a").path, "/?a");

        let u = ok("http://[fd00::200]:3000/x");
        assert_eq!(u.addr, "[fd00::200]:3000".parse().unwrap());
        assert_eq!(u.path, "/x");
        assert_eq!(ok("http://[::1]").addr, "[::1]:80".parse().unwrap());
    }

    #[test]
    fn rejects_everything_else() {
        let cases = [
            ("https://1.2.3.4:443/", "Scheme"),
            ("1.2.3.4:3000", "Scheme"),
            ("", "Scheme"),
            ("http://vip.example:3000/", "Host"),
            ("http://localhost/", "Host"),
            ("http://:3000/", "Host"),
            ("http://fd00::1/", "Host"),
            ("http://[fd00::1/", "Host"),
            ("http://[fd00::1]x/", "Host"),
            ("http://[1.2.3.4]:80/", "Host"),
            ("http://1.2.3.256/", "Host"),
            ("http://u:p@1.2.3.4/", "UserInfo"),
            ("http://1.2.3.4:0/", "Port"),
            ("http://1.2.3.4:65536/", "Port"),
            ("http://1.2.3.4:/", "Port"),
            ("http://1.2.3.4:+80/", "Port"),
            ("http://1.2.3.4:80/a b", "Path"),
            ("http://1.2.3.4:80/a\n", "Path"),
        ];
        for (s, want) in cases {
            let e = HttpUrl::parse(s).expect_err(s);
            let kind = match e {
                UrlError::Scheme(_) => "Scheme",
                UrlError::UserInfo => "UserInfo",
                UrlError::Host(_) => "Host",
                UrlError::Port(_) => "Port",
                UrlError::Path => "Path",
            };
            assert_eq!(kind, want, "{s}: unexpected {e:?}");
            assert!(!e.to_string().is_empty());
        }
    }
}
