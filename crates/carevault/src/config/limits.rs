//! What one client may take of the server: open connections, time to send a request head or to
//! take an answer (`MAX_CONNECTIONS`, `HEADER_READ_TIMEOUT_SECONDS`, `WRITE_STALL_TIMEOUT_SECONDS`), and requests per minute of a user and of a
//! tenant (`RATE_LIMIT_USER_PER_MINUTE`, `RATE_LIMIT_TENANT_PER_MINUTE`; 0 turns one off).

use std::num::NonZeroU32;

use carevault_api::rate_limit::RateLimits;
use carevault_api::server::ConnectionLimits;

use super::vars::{Unit, Vars};

/// `HEADER_READ_TIMEOUT_SECONDS`, `WRITE_STALL_TIMEOUT_SECONDS` and `MAX_CONNECTIONS`.
pub(super) fn connections_with(vars: &mut Vars<'_>) -> ConnectionLimits {
    let default = ConnectionLimits::default();
    let header_read_timeout =
        vars.duration("HEADER_READ_TIMEOUT_SECONDS", Unit::Seconds, default.header_read_timeout, 1, 3600);
    let write_stall_timeout =
        vars.duration("WRITE_STALL_TIMEOUT_SECONDS", Unit::Seconds, default.write_stall_timeout, 1, 3600);
    let max_connections =
        vars.number("MAX_CONNECTIONS", u64::try_from(default.max_connections).unwrap_or(u64::MAX), 1, 1_000_000);
    ConnectionLimits {
        header_read_timeout,
        write_stall_timeout,
        max_connections: usize::try_from(max_connections).unwrap_or(default.max_connections),
    }
}

/// `RATE_LIMIT_USER_PER_MINUTE` and `RATE_LIMIT_TENANT_PER_MINUTE`.
pub(super) fn rate_limits_with(vars: &mut Vars<'_>) -> RateLimits {
    let default = RateLimits::default();
    let mut per_minute = |name: &str, default: Option<NonZeroU32>| {
        let default = default.map_or(0, |n| u64::from(n.get()));
        let n = vars.number(name, default, 0, 1_000_000);
        u32::try_from(n).ok().and_then(NonZeroU32::new)
    };
    RateLimits {
        user_per_minute: per_minute("RATE_LIMIT_USER_PER_MINUTE", default.user_per_minute),
        tenant_per_minute: per_minute("RATE_LIMIT_TENANT_PER_MINUTE", default.tenant_per_minute),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::test_support::{mentions, serve};

    #[test]
    fn connection_limits_are_read_and_range_checked() {
        let config = serve(
            &[("HEADER_READ_TIMEOUT_SECONDS", "3"), ("WRITE_STALL_TIMEOUT_SECONDS", "7"), ("MAX_CONNECTIONS", "64")],
            None,
        )
        .expect("valid");
        assert_eq!(
            config.api.connections,
            ConnectionLimits {
                header_read_timeout: Duration::from_secs(3),
                write_stall_timeout: Duration::from_secs(7),
                max_connections: 64
            }
        );
        let refused = serve(&[("HEADER_READ_TIMEOUT_SECONDS", "0"), ("MAX_CONNECTIONS", "0")], None).expect_err("0");
        assert!(mentions(&refused.0, &["HEADER_READ_TIMEOUT_SECONDS", "1 to 3600"]), "{:?}", refused.0);
        assert!(mentions(&refused.0, &["MAX_CONNECTIONS", "1 to 1000000"]), "{:?}", refused.0);
    }

    #[test]
    fn rate_limits_are_read_and_0_turns_one_off() {
        let config =
            serve(&[("RATE_LIMIT_USER_PER_MINUTE", "0"), ("RATE_LIMIT_TENANT_PER_MINUTE", "90")], None).expect("valid");
        assert_eq!(
            config.api.rate_limits,
            RateLimits { user_per_minute: None, tenant_per_minute: NonZeroU32::new(90) }
        );
        assert_eq!(serve(&[], None).expect("valid").api.rate_limits, RateLimits::default());
        let refused = serve(&[("RATE_LIMIT_USER_PER_MINUTE", "-1")], None).expect_err("negative");
        assert!(mentions(&refused.0, &["RATE_LIMIT_USER_PER_MINUTE", "0 to 1000000"]), "{:?}", refused.0);
    }
}
