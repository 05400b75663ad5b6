//! The OpenAPI 3.1 document, generated from the handlers' annotations and served at
//! `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorCode, ErrorEnvelope};
use crate::handlers::{audit, documents, documents_batch, health, me, platform, users};
use crate::schema;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "carevault", description = "Multi-tenant healthcare document store with tenant isolation enforced by PostgreSQL row-level security."),
    paths(
        health::live, health::ready,
        me::validate, me::current_tenant,
        users::create, users::list, users::get, users::update, users::delete, users::restore,
        documents::create, documents::list, documents::get, documents::update, documents::delete, documents::restore, documents::search,
        documents_batch::batch,
        audit::list,
        audit::latest_checkpoint,
        platform::create, platform::list, platform::suspend, platform::activate, platform::set_jit_email_domains,
    ),
    // The request schemas reach the document through the operations, except those only referred to
    // by query parameters or through `value_type` (metadata).
    components(schemas(
        ErrorEnvelope, ErrorBody, ErrorCode,
        schema::MetadataObject, schema::DocumentStatusName, schema::DeletedFilter,
        schema::DocumentInclude, schema::PageCursor, schema::Text255, schema::AuditActionName,
        schema::AuditResourceTypeName,
    )),
    modifiers(&SecuritySchemes, &ErrorResponses),
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

/// Documents the error answers every operation can give (the handlers' annotations list only
/// the ones specific to them): the envelope for 400/413/415/422 (input), 401/403 (secured
/// operations), 404 (operations on an id), 429 with `Retry-After` (operations of a tenant's user,
/// [`crate::rate_limit`]), 500/503/504 (server). Found missing by the schema fuzzer
/// (schemathesis ST103).
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let envelope = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorEnvelope"))).build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put];
            for operation in operations.into_iter().flatten() {
                let mut codes = vec![("500", "unexpected error"), ("503", "database or identity provider unavailable")];
                if operation.request_body.is_some() || operation.parameters.is_some() {
                    codes.extend([
                        ("400", "malformed body"),
                        ("413", "body too large"),
                        ("415", "not JSON"),
                        ("422", "invalid input"),
                    ]);
                }
                if operation.security.is_some() {
                    codes.extend([("401", "not authenticated"), ("403", "not allowed"), ("504", "request timeout")]);
                }
                if path.contains("{id}") {
                    codes.push(("404", "not found"));
                }
                if operation.security.is_some() && !path.starts_with(PLATFORM_PATHS) {
                    operation.responses.responses.entry("429".to_string()).or_insert_with(|| {
                        let mut response = envelope("rate limit reached (the user's or the tenant's)");
                        let seconds = utoipa::openapi::ObjectBuilder::new()
                            .schema_type(utoipa::openapi::schema::Type::Integer)
                            .minimum(Some(1));
                        let mut header = utoipa::openapi::header::Header::new(seconds);
                        header.description = Some("Seconds to wait before the next request".to_string());
                        response.headers.insert("Retry-After".to_string(), header.into());
                        response.into()
                    });
                }
                for (code, description) in codes {
                    operation
                        .responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| envelope(description).into());
                }
            }
        }
    }
}

/// The path prefix of the platform API, absent from the document when the API is disabled.
const PLATFORM_PATHS: &str = "/api/v1/platform/";
/// The schemas only the platform API uses.
const PLATFORM_SCHEMAS: [&str; 4] =
    ["CreateTenantRequest", "TenantStatusName", "JitEmailDomainsRequest", "EmailDomainName"];

/// The document as pretty JSON. Without the platform API (no `PLATFORM_API_TOKEN`) its paths,
/// tag, security scheme and schemas are left out, as the router leaves out its routes: the
/// document describes what this server serves.
pub fn openapi_json(with_platform: bool) -> String {
    let mut document = ApiDoc::openapi();
    if !with_platform {
        document.paths.paths.retain(|path, _| !path.starts_with(PLATFORM_PATHS));
        if let Some(tags) = document.tags.as_mut() {
            tags.retain(|tag| tag.name != "platform");
        }
        if let Some(components) = document.components.as_mut() {
            components.security_schemes.remove("platform");
            components.schemas.retain(|name, _| !PLATFORM_SCHEMAS.contains(&name.as_str()));
        }
    }
    // Serializing plain data (strings, maps, finite numbers) cannot fail; the document is built once,
    // when the router is.
    let mut document = serde_json::to_value(document).expect("the OpenAPI document serializes");
    schema::add_keywords_utoipa_lacks(&mut document);
    serde_json::to_string_pretty(&document).expect("the OpenAPI document serializes")
}
