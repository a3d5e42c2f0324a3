//! Who may use the admin API: the names it answers to (a page on another
//! site that rebinds its DNS name to 127.0.0.1 sends its own name as
//! `Host`, and is refused), the token reads need when one is set, and the
//! token changes need.

use std::net::SocketAddr;

use axum::http::{HeaderMap, StatusCode, header};

use crate::connect::Secret;

/// The names the API answers to unless told otherwise.
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The admin API's access rules.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The token changes need (`None`: changes are refused).
    pub change_token: Option<Secret>,
    /// The token reads need (`None`: whoever reaches the API may read);
    /// the change token reads too.
    pub read_token: Option<Secret>,
    /// The host names (without port) a request's `Host` may carry,
    /// lowercase; `*` accepts any.
    pub allowed_hosts: Vec<String>,
}

/// A refused request: its status and why.
#[derive(Debug)]
pub struct Refusal(pub StatusCode, pub String);

impl Access {
    /// The rules for an API listening on `addr`: the loopback names, the
    /// address itself, and `extra_hosts`, are the names it answers to.
    pub fn new(
        addr: SocketAddr,
        change_token: Option<Secret>,
        read_token: Option<Secret>,
        extra_hosts: &[String],
    ) -> Self {
        let mut allowed_hosts: Vec<String> = LOOPBACK_HOSTS.map(str::to_owned).to_vec();
        if !addr.ip().is_unspecified() {
            allowed_hosts.push(match addr {
                SocketAddr::V4(v4) => v4.ip().to_string(),
                SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
            });
        }
        allowed_hosts.extend(extra_hosts.iter().map(|host| host.trim().to_lowercase()));
        let nonempty = |token: Option<Secret>| token.filter(|token| !token.expose().is_empty());
        Self {
            change_token: nonempty(change_token),
            read_token: nonempty(read_token),
            allowed_hosts,
        }
    }

    /// The request's `Host` is one the API answers to.
    pub fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.allowed_hosts.iter().any(|host| host == "*") {
            return Ok(());
        }
        let host = headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .map(|value| without_port(value).to_lowercase());
        match host {
            Some(host) if self.allowed_hosts.contains(&host) => Ok(()),
            Some(host) => Err(Refusal(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this admin API does not answer to the name `{host}`; if that name is \
                     meant to reach it, add it to --admin-allowed-hosts (WEIR_ADMIN_ALLOWED_HOSTS)"
                ),
            )),
            None => Err(Refusal(
                StatusCode::BAD_REQUEST,
                "a request needs a Host header".to_owned(),
            )),
        }
    }

    /// Reads are open, or the request carries the read or the change token.
    pub fn check_read(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(read) = &self.read_token else {
            return Ok(());
        };
        let given = given_token(headers);
        let matches = |token: &Secret| given.as_deref().is_some_and(|given| same(given, token));
        if matches(read) || self.change_token.as_ref().is_some_and(matches) {
            return Ok(());
        }
        Err(Refusal(
            StatusCode::UNAUTHORIZED,
            match given {
                Some(_) => "wrong token".to_owned(),
                None => {
                    "reading needs a token: send `Authorization: Bearer <WEIR_ADMIN_READ_TOKEN>` \
                         (a browser asks for it as the password)"
                        .to_owned()
                }
            },
        ))
    }

    /// The request carries the change token.
    pub fn check_change(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(token) = &self.change_token else {
            return Err(Refusal(
                StatusCode::UNAUTHORIZED,
                "weir was started without WEIR_ADMIN_TOKEN, so changes through the admin API are off"
                    .to_owned(),
            ));
        };
        match given_token(headers) {
            Some(given) if same(&given, token) => Ok(()),
            Some(_) => Err(Refusal(StatusCode::UNAUTHORIZED, "wrong token".to_owned())),
            None => Err(Refusal(
                StatusCode::UNAUTHORIZED,
                "this call changes the pipeline: send `Authorization: Bearer <WEIR_ADMIN_TOKEN>`"
                    .to_owned(),
            )),
        }
    }
}

/// `host[:port]` or `[v6]:port` without its port.
fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The token of `Authorization: Bearer <token>`, or the password of
/// `Authorization: Basic` (what a browser sends once it has asked).
fn given_token(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_owned());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    Some(pair.split_once(':')?.1.to_owned())
}

/// Compares in constant time.
fn same(given: &str, token: &Secret) -> bool {
    constant_time_eq::constant_time_eq(given.as_bytes(), token.expose().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn only_the_allowed_names_are_answered() {
        let access = Access::new("127.0.0.1:7878".parse().unwrap(), None, None, &[]);
        for host in [
            "127.0.0.1:7878",
            "localhost:7878",
            "LOCALHOST",
            "[::1]:7878",
        ] {
            assert!(
                access.check_host(&headers(&[(header::HOST, host)])).is_ok(),
                "{host}"
            );
        }
        for host in [
            "attacker.example:7878",
            "127.0.0.1.nip.io",
            "localhost.evil",
        ] {
            let refused = access.check_host(&headers(&[(header::HOST, host)]));
            assert!(refused.is_err(), "{host}");
        }
        assert!(access.check_host(&HeaderMap::new()).is_err());

        let named = Access::new(
            "0.0.0.0:7878".parse().unwrap(),
            None,
            None,
            &["weir".into()],
        );
        assert!(
            named
                .check_host(&headers(&[(header::HOST, "weir:7878")]))
                .is_ok()
        );
        let any = Access::new("0.0.0.0:7878".parse().unwrap(), None, None, &["*".into()]);
        assert!(
            any.check_host(&headers(&[(header::HOST, "anything")]))
                .is_ok()
        );
    }

    #[test]
    fn reads_need_the_read_or_the_change_token_once_one_is_set() {
        let addr = "127.0.0.1:0".parse().unwrap();
        let open = Access::new(addr, Some(Secret::new("change")), None, &[]);
        assert!(open.check_read(&HeaderMap::new()).is_ok());

        let closed = Access::new(
            addr,
            Some(Secret::new("change")),
            Some(Secret::new("read")),
            &[],
        );
        let bearer = |token: &str| headers(&[(header::AUTHORIZATION, &format!("Bearer {token}"))]);
        assert!(closed.check_read(&HeaderMap::new()).is_err());
        assert!(closed.check_read(&bearer("wrong")).is_err());
        assert!(closed.check_read(&bearer("read")).is_ok());
        assert!(closed.check_read(&bearer("change")).is_ok());
        // A browser's basic authentication: any user, the token as password.
        let basic = headers(&[(header::AUTHORIZATION, "Basic YW55b25lOnJlYWQ=")]);
        assert!(closed.check_read(&basic).is_ok());

        assert!(closed.check_change(&bearer("read")).is_err());
        assert!(closed.check_change(&bearer("change")).is_ok());
        let no_changes = Access::new(addr, None, None, &[]);
        assert!(no_changes.check_change(&bearer("")).is_err());
    }
}
