//! The OpenAPI document of the public API, generated from the handlers and
//! the domain types, served at `/openapi.json`.
//!
//! It states every rule the gateway and the roles behind it enforce, so that
//! a request generated from the document alone is accepted, or refused only
//! with a status the document lists: the bounds of every number and list, the
//! integer formats, the `Idempotency-Key`'s length and characters, who must
//! authenticate, and every status an operation can answer, each error with
//! the problem+json body. `tests/src/openapi_requests.rs` generates such
//! requests; the e2e test `openapi` sends them to a running gateway.

use axum::Json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi, ToResponse};

use crate::domain::{
    CheckoutBody, CheckoutBodyItem, Order, OrderId, OrderItem, OrderStatus, Product, ProductId,
    ProductList, Quantity,
};
use crate::problem::{PROBLEM_JSON, Problem};

/// The name of the bearer scheme in `components.securitySchemes`, as the
/// handlers' `security(...)` name it.
pub const BEARER_AUTH: &str = "bearerAuth";

/// The public API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "faultline shop",
        description = "The public API of the faultline shop, served by the gateway.

Every error is `application/problem+json` (RFC 9457, schema `Problem`).

Rules that hold on every operation:
- **Rate limit**: per client (the subject of its bearer token, else its address), shared by the gateway replicas. Over the quota, `429` with `Retry-After`. Every answer carries `RateLimit-Policy` and `RateLimit` (draft IETF fields).
- **Load shedding and deadlines**: past the gateway's requests in flight, `503` with `Retry-After: 1`; a request that outlives its deadline (the gateway's own, or a shorter one the client sends as `X-Request-Timeout-Ms`, a whole number of milliseconds of at least 1, else `400`) gets `503`. A dependency that cannot answer is a fast `503` too.
- **Authentication**: `bearerAuth` (a JWT). The order operations require it; the product operations are public, but a token presented on them must be valid. A refused credential is `401` with a `WWW-Authenticate: Bearer realm=\"faultline\", error=...` challenge.
- **Bodies**: at most 64 KiB (`413` beyond). Integers are written without a fraction or an exponent (`2`, not `2.0`): the server refuses the latter with `422`."
    ),
    paths(
        super::list_products,
        super::get_product,
        super::create_order,
        super::get_order,
    ),
    components(
        schemas(
            Product, ProductId, ProductList, CheckoutBody, CheckoutBodyItem, Order, OrderId,
            OrderItem, OrderStatus, Quantity, Problem,
        ),
        responses(Unauthorized, InvalidToken, TooManyRequests, ServiceUnavailable),
    ),
    modifiers(&BearerAuth),
    tags((name = "shop", description = "Browse products and place orders"))
)]
pub struct ApiDoc;

/// The document `/openapi.json` serves.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// Adds the `bearerAuth` scheme: an HTTP bearer JWT.
#[derive(Debug, Clone, Copy)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER_AUTH,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT signed by the shop's identity provider (ES256 or EdDSA, its key chosen by `kid` from the JWKS), checked for `exp`, `nbf`, `iss` and `aud`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// A header whose value is a string.
fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

/// `Retry-After`: whole seconds, at least one.
fn retry_after(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                .minimum(Some(1)),
        )
        .description(Some(description))
        .build()
}

/// An error answer: a problem+json body, with `headers`.
fn problem_response(
    description: &str,
    headers: impl IntoIterator<Item = (&'static str, utoipa::openapi::header::Header)>,
) -> RefOr<Response> {
    let mut response = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    for (name, header) in headers {
        response = response.header(name, header);
    }
    response.build().into()
}

/// The challenge of a 401 (RFC 6750, section 3).
const WWW_AUTHENTICATE: &str = "The challenge (RFC 6750): `Bearer realm=\"faultline\"` when no token was sent; with `, error=\"invalid_request\"` when the Authorization header is not `Bearer <token>`, or `, error=\"invalid_token\"` when the token is refused, each followed by an `error_description`";

/// 401 on an operation that requires a token.
#[derive(Debug, Clone, Copy)]
pub struct Unauthorized;

impl<'r> ToResponse<'r> for Unauthorized {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "Unauthorized",
            problem_response(
                "No bearer token, or one that is malformed, expired, not yet valid, for another issuer or audience, signed with an unknown key or algorithm, or otherwise invalid",
                [("WWW-Authenticate", string_header(WWW_AUTHENTICATE))],
            ),
        )
    }
}

/// 401 on a public operation: a token was presented and is invalid.
#[derive(Debug, Clone, Copy)]
pub struct InvalidToken;

impl<'r> ToResponse<'r> for InvalidToken {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "InvalidToken",
            problem_response(
                "The operation is public, but the request presented a bearer token that is malformed, expired, or otherwise invalid (send none, or a valid one)",
                [("WWW-Authenticate", string_header(WWW_AUTHENTICATE))],
            ),
        )
    }
}

/// 429 from the rate limit, on every operation.
#[derive(Debug, Clone, Copy)]
pub struct TooManyRequests;

impl<'r> ToResponse<'r> for TooManyRequests {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "TooManyRequests",
            problem_response(
                "The client is over its rate limit; retry after `Retry-After` seconds",
                [
                    (
                        "Retry-After",
                        retry_after("Seconds until the client may send again"),
                    ),
                    (
                        "RateLimit-Policy",
                        string_header("The quota: `\"per-client\";q=<requests per second>;w=1`"),
                    ),
                    (
                        "RateLimit",
                        string_header(
                            "What is left: `\"per-client\";r=<requests left now>;t=<seconds until the quota is full>`",
                        ),
                    ),
                ],
            ),
        )
    }
}

/// 503 on every operation: load shedding, a passed deadline, or a dependency
/// that cannot answer.
#[derive(Debug, Clone, Copy)]
pub struct ServiceUnavailable;

impl<'r> ToResponse<'r> for ServiceUnavailable {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "ServiceUnavailable",
            problem_response(
                "Try again later: the gateway is shedding load (with `Retry-After`), the request's deadline passed, or a service behind the gateway is unavailable. A checkout retried with the same Idempotency-Key is safe.",
                [(
                    "Retry-After",
                    retry_after("When known: seconds to wait before retrying"),
                )],
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::domain::{MAX_ITEMS, MAX_KEY_LEN, MAX_QUANTITY};

    const OPERATIONS: [(&str, &str); 4] = [
        ("/api/products", "get"),
        ("/api/products/{id}", "get"),
        ("/api/orders", "post"),
        ("/api/orders/{id}", "get"),
    ];

    fn doc() -> Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    /// Follows `$ref`s within the document.
    fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
        while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
            let pointer = reference.strip_prefix('#').unwrap();
            value = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling {reference}"));
        }
        value
    }

    fn operation<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
        doc["paths"][path]
            .get(method)
            .unwrap_or_else(|| panic!("{method} {path} is missing"))
    }

    fn response<'a>(doc: &'a Value, path: &str, method: &str, status: &str) -> &'a Value {
        let responses = &operation(doc, path, method)["responses"];
        resolve(
            doc,
            responses
                .get(status)
                .unwrap_or_else(|| panic!("{method} {path} lacks {status}")),
        )
    }

    /// The schema a property resolves to.
    fn property<'a>(doc: &'a Value, schema: &str, name: &str) -> &'a Value {
        let schema = &doc["components"]["schemas"][schema];
        resolve(doc, &schema["properties"][name])
    }

    #[test]
    fn documents_every_public_route() {
        let doc = doc();
        for (path, method) in OPERATIONS {
            operation(&doc, path, method);
        }
        let create = &doc["paths"]["/api/orders"]["post"];
        for status in [
            "201", "202", "400", "401", "402", "409", "413", "422", "429", "503",
        ] {
            assert!(
                create["responses"].get(status).is_some(),
                "POST /api/orders lacks {status}"
            );
        }
        assert!(doc["components"]["schemas"].get("Problem").is_some());
    }

    #[test]
    fn every_operation_answers_401_429_and_503() {
        let doc = doc();
        for (path, method) in OPERATIONS {
            for status in ["401", "429", "503"] {
                response(&doc, path, method, status);
            }
            let limited = response(&doc, path, method, "429");
            assert!(limited["headers"].get("Retry-After").is_some(), "{path}");
            let refused = response(&doc, path, method, "401");
            assert!(
                refused["headers"].get("WWW-Authenticate").is_some(),
                "{path}"
            );
        }
    }

    #[test]
    fn every_error_is_problem_json() {
        let doc = doc();
        let mut errors = 0;
        for (path, method) in OPERATIONS {
            let responses = operation(&doc, path, method)["responses"]
                .as_object()
                .unwrap();
            for (status, answer) in responses {
                let code: u16 = status.parse().expect("explicit statuses, no `default`");
                let answer = resolve(&doc, answer);
                let content = answer["content"].as_object().unwrap();
                if code < 400 {
                    assert!(!content.contains_key(PROBLEM_JSON), "{path} {status}");
                    continue;
                }
                errors += 1;
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    [PROBLEM_JSON],
                    "{method} {path} {status}"
                );
                assert_eq!(
                    content[PROBLEM_JSON]["schema"]["$ref"], "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
        }
        assert!(errors >= 20, "{errors} error answers");
    }

    #[test]
    fn the_problem_schema_has_the_rfc_9457_fields() {
        let doc = doc();
        let problem = &doc["components"]["schemas"]["Problem"];
        for field in ["type", "title", "status", "detail"] {
            assert!(problem["properties"].get(field).is_some(), "{field}");
        }
        let status = property(&doc, "Problem", "status");
        assert_eq!(status["minimum"], 400);
        assert_eq!(status["maximum"], 599);
        let required: Vec<&str> = problem["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["type", "title", "status"]);
        // `detail` is left out rather than null.
        assert_eq!(property(&doc, "Problem", "detail")["type"], "string");
    }

    #[test]
    fn the_checkout_body_states_its_bounds() {
        let doc = doc();
        let body = &doc["components"]["schemas"]["CheckoutBody"];
        assert_eq!(body["additionalProperties"], false);
        assert_eq!(body["required"], serde_json::json!(["items"]));
        let items = property(&doc, "CheckoutBody", "items");
        assert_eq!(items["type"], "array");
        assert_eq!(items["minItems"], 1);
        assert_eq!(items["maxItems"], MAX_ITEMS);
        assert_eq!(items["uniqueItems"], true);
        let line = resolve(&doc, &items["items"]);
        assert_eq!(line["additionalProperties"], false);
        assert_eq!(
            line["required"],
            serde_json::json!(["product_id", "quantity"])
        );

        let quantity = property(&doc, "CheckoutBodyItem", "quantity");
        assert_eq!(quantity["type"], "integer");
        assert_eq!(quantity["format"], "int32");
        assert_eq!(quantity["minimum"], 1);
        assert_eq!(quantity["maximum"], MAX_QUANTITY);

        let product_id = property(&doc, "CheckoutBodyItem", "product_id");
        assert_eq!(product_id["type"], "integer");
        assert_eq!(product_id["format"], "int64");
        assert_eq!(product_id["minimum"], 1);
        assert_eq!(product_id["maximum"], i64::MAX);

        let request = &operation(&doc, "/api/orders", "post")["requestBody"];
        assert_eq!(request["required"], true);
        assert_eq!(
            request["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/CheckoutBody"
        );
    }

    #[test]
    fn the_idempotency_key_states_its_length_and_characters() {
        let doc = doc();
        let params = operation(&doc, "/api/orders", "post")["parameters"]
            .as_array()
            .unwrap();
        let key = params
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .unwrap();
        assert_eq!(key["in"], "header");
        assert_eq!(key["required"], true);
        let schema = resolve(&doc, &key["schema"]);
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["minLength"], 1);
        assert_eq!(schema["maxLength"], MAX_KEY_LEN);
        assert_eq!(schema["pattern"], "^[!-~]{1,255}$");
    }

    #[test]
    fn path_ids_state_their_type_and_bounds() {
        let doc = doc();
        let param = |path: &str| {
            let params = operation(&doc, path, "get")["parameters"]
                .as_array()
                .unwrap();
            let id = params.iter().find(|p| p["name"] == "id").unwrap();
            assert_eq!(id["in"], "path");
            assert_eq!(id["required"], true);
            resolve(&doc, &id["schema"]).clone()
        };
        let product = param("/api/products/{id}");
        assert_eq!(product["type"], "integer");
        assert_eq!(product["format"], "int64");
        assert_eq!(product["minimum"], 1);
        assert_eq!(product["maximum"], i64::MAX);
        let order = param("/api/orders/{id}");
        assert_eq!(order["type"], "string");
        assert_eq!(order["format"], "uuid");
    }

    #[test]
    fn the_orders_require_a_bearer_jwt_and_the_products_do_not() {
        let doc = doc();
        let scheme = &doc["components"]["securitySchemes"][BEARER_AUTH];
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
        assert_eq!(scheme["bearerFormat"], "JWT");
        // No global requirement: each operation says its own.
        assert!(doc.get("security").is_none());
        for path in ["/api/orders", "/api/orders/{id}"] {
            let method = if path == "/api/orders" { "post" } else { "get" };
            assert_eq!(
                operation(&doc, path, method)["security"],
                serde_json::json!([{ BEARER_AUTH: [] }]),
                "{method} {path}"
            );
            let refused = &operation(&doc, path, method)["responses"]["401"]["$ref"];
            assert_eq!(refused, "#/components/responses/Unauthorized");
        }
        for path in ["/api/products", "/api/products/{id}"] {
            // Optional: no credential, or a valid bearer token.
            assert_eq!(
                operation(&doc, path, "get")["security"],
                serde_json::json!([{}, { BEARER_AUTH: [] }]),
                "{path}"
            );
            let refused = &operation(&doc, path, "get")["responses"]["401"]["$ref"];
            assert_eq!(refused, "#/components/responses/InvalidToken");
        }
    }

    #[test]
    fn another_customers_order_is_documented_as_404() {
        let doc = doc();
        let missing = response(&doc, "/api/orders/{id}", "get", "404");
        let description = missing["description"].as_str().unwrap();
        assert!(description.contains("another customer"), "{description}");
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(doc: &Value, value: &Value) {
            match value {
                Value::Object(map) => {
                    if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                        let pointer = reference.strip_prefix('#').unwrap();
                        assert!(doc.pointer(pointer).is_some(), "dangling {reference}");
                    }
                    map.values().for_each(|v| walk(doc, v));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(doc, v)),
                _ => {}
            }
        }
        let doc = doc();
        walk(&doc, &doc);
    }
}
