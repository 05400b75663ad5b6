//! The OpenAPI 3.1 document, generated from the handlers' annotations and served at
//! `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorCode, ErrorEnvelope};
use crate::handlers::{audit, documents, health, me, platform, users};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "carevault", description = "Multi-tenant healthcare document store with tenant isolation enforced by PostgreSQL row-level security."),
    paths(
        health::live, health::ready,
        me::validate, me::current_tenant,
        users::create, users::list, users::get, users::update, users::delete, users::restore,
        documents::create, documents::list, documents::get, documents::update, documents::delete, documents::restore, documents::search,
        audit::list,
        platform::create, platform::list, platform::suspend, platform::activate,
    ),
    components(schemas(ErrorEnvelope, ErrorBody, ErrorCode)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "health", description = "Liveness and readiness (no authentication)"),
        (name = "auth", description = "The caller"),
        (name = "tenants", description = "The caller's tenant"),
        (name = "users", description = "Users of the caller's tenant"),
        (name = "documents", description = "Documents of the caller's tenant and similarity search"),
        (name = "audit", description = "The tenant's audit log"),
        (name = "platform", description = "Tenant administration (PLATFORM_API_TOKEN)"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "platform",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".to_string())
}
