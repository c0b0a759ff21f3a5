//! The OpenAPI document of the public API, generated from the handlers and
//! the domain types, served at `/openapi.json`.

use axum::Json;
use utoipa::OpenApi;

use crate::domain::{
    CheckoutBody, CheckoutBodyItem, Order, OrderId, OrderItem, OrderStatus, Product, ProductId,
    ProductList, Quantity,
};
use crate::problem::Problem;

/// The public API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "faultline shop",
        description = "The public API of the faultline shop, served by the gateway. Errors are application/problem+json (RFC 9457)."
    ),
    paths(
        super::list_products,
        super::get_product,
        super::create_order,
        super::get_order,
    ),
    components(schemas(
        Product, ProductId, ProductList, CheckoutBody, CheckoutBodyItem, Order, OrderId, OrderItem,
        OrderStatus, Quantity, Problem,
    )),
    tags((name = "shop", description = "Browse products and place orders"))
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_every_public_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/api/products",
            "/api/products/{id}",
            "/api/orders",
            "/api/orders/{id}",
        ] {
            assert!(paths.contains_key(path), "{path} is missing from {paths:?}");
        }
        let create = &doc["paths"]["/api/orders"]["post"];
        for status in ["201", "202", "400", "402", "409", "413", "422", "503"] {
            assert!(
                create["responses"].get(status).is_some(),
                "POST /api/orders lacks {status}"
            );
        }
        assert!(doc["components"]["schemas"].get("Problem").is_some());
    }
}
