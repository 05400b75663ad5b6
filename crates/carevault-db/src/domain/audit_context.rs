//! Who is acting, written into every audit row of a transaction.

use super::ids::UserId;

/// Who is acting and from where; written into every audit row of a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditContext {
    /// The acting user (`None` for system actions such as just-in-time provisioning before the
    /// user exists, or the platform path).
    pub user_id: Option<UserId>,
    /// The request id (stored in the audit metadata).
    pub request_id: Option<String>,
    /// The client's IP address.
    pub ip_address: Option<std::net::IpAddr>,
    /// The client's user agent (truncated to 512 characters).
    pub user_agent: Option<String>,
}
