//! The address the server listens on: `--listen`, else `PORT`, else [`DEFAULT_LISTEN`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::vars::{ConfigError, Vars};

/// `--listen` when neither it nor `PORT` is given.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// The address to listen on: `--listen` wins over `PORT` (which means `0.0.0.0:$PORT`); the
/// default is [`DEFAULT_LISTEN`].
pub fn listen_addr(lookup: &dyn Fn(&str) -> Option<String>, listen: Option<&str>) -> Result<SocketAddr, ConfigError> {
    let mut vars = Vars::new(lookup);
    let addr = listen_with(&mut vars, listen);
    vars.finish(addr)
}

/// [`listen_addr`], its problems recorded on `vars`.
pub(super) fn listen_with(vars: &mut Vars<'_>, listen: Option<&str>) -> SocketAddr {
    if let Some(listen) = listen {
        return match listen.trim().parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                vars.problem(format!(
                    "--listen must be ADDR:PORT, e.g. 127.0.0.1:8080 or [::1]:8080 (an IP address, not a host name), got {listen:?}"
                ));
                DEFAULT_LISTEN
            }
        };
    }
    match vars.get("PORT") {
        None => DEFAULT_LISTEN,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            _ => {
                vars.problem(format!("PORT must be a port number from 1 to 65535, got {text:?}"));
                DEFAULT_LISTEN
            }
        },
    }
}

/// The address a local client (healthcheck, printed curl commands) reaches a server listening on
/// `addr`: a wildcard address becomes the loopback address of its family.
pub fn local_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{lookup, mentions, problems, serve};

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("addr")
    }

    #[test]
    fn listen_wins_over_port_and_port_means_all_interfaces() {
        let vars = [("PORT", "9000")];
        assert_eq!(serve(&vars, None).expect("valid").listen, addr("0.0.0.0:9000"));
        assert_eq!(serve(&vars, Some("127.0.0.1:7000")).expect("valid").listen, addr("127.0.0.1:7000"));
        assert_eq!(serve(&[], Some("[::1]:7001")).expect("valid").listen, addr("[::1]:7001"));
        assert_eq!(serve(&[], None).expect("valid").listen, addr("127.0.0.1:8080"));
        assert_eq!(DEFAULT_LISTEN, addr("127.0.0.1:8080"));
        // listen_addr (healthcheck) follows the same rules.
        assert_eq!(listen_addr(&lookup(&vars), None).expect("valid").port(), 9000);
        assert_eq!(listen_addr(&lookup(&vars), Some("127.0.0.1:7000")).expect("valid").port(), 7000);
    }

    #[test]
    fn bad_listen_and_port_values_are_named() {
        for bad in ["0", "65536", "-1", "80a"] {
            let found = problems(&[("PORT", bad)]);
            assert!(mentions(&found, &["PORT", "1 to 65535", bad]), "{found:?}");
        }
        for bad in ["localhost:8080", "8080", "127.0.0.1"] {
            let found = serve(&[], Some(bad)).expect_err("refused").0;
            assert!(mentions(&found, &["--listen", "ADDR:PORT", bad]), "{found:?}");
        }
        // A bad PORT does not matter when --listen is given.
        assert!(serve(&[("PORT", "nope")], Some("127.0.0.1:1")).is_ok());
    }

    #[test]
    fn wildcard_listen_addresses_are_reached_on_loopback() {
        assert_eq!(local_addr(addr("0.0.0.0:9000")), addr("127.0.0.1:9000"));
        assert_eq!(local_addr(addr("[::]:9000")), addr("[::1]:9000"));
        assert_eq!(local_addr(addr("10.1.2.3:9000")), addr("10.1.2.3:9000"));
    }
}
