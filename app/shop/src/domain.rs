//! Domain types shared by the services and their clients: what a product, an
//! order and a checkout are, and which values are valid.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The most items one checkout may hold.
pub const MAX_ITEMS: usize = 20;
/// The most units of one product in one checkout.
pub const MAX_QUANTITY: i64 = 100;
/// The longest Idempotency-Key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// A value that failed validation, with a message a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A product's id: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProductId(i64);

impl ProductId {
    pub fn parse(value: i64) -> Result<Self, Invalid> {
        if value > 0 {
            Ok(Self(value))
        } else {
            Err(Invalid(format!(
                "product_id must be a positive integer, got {value}"
            )))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// An id read back from the database, where the schema guarantees it.
    pub(crate) fn from_db(value: i64) -> Self {
        Self(value)
    }
}

impl std::fmt::Display for ProductId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How many units of a product: 1 to [`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Quantity(i32);

impl Quantity {
    pub fn parse(value: i64) -> Result<Self, Invalid> {
        if (1..=MAX_QUANTITY).contains(&value) {
            // In range 1..=100, so it fits an i32.
            Ok(Self(
                i32::try_from(value).map_err(|_| Invalid("quantity out of range".into()))?,
            ))
        } else {
            Err(Invalid(format!(
                "quantity must be between 1 and {MAX_QUANTITY}, got {value}"
            )))
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// An order's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct OrderId(pub Uuid);

impl OrderId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for OrderId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A client's `Idempotency-Key`: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        if value.is_empty() || value.len() > MAX_KEY_LEN {
            return Err(Invalid(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters long, got {}",
                value.len()
            )));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Invalid(
                "Idempotency-Key must be visible ASCII characters without spaces".into(),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Product {
    pub id: ProductId,
    pub sku: String,
    pub name: String,
    #[schema(minimum = 0)]
    pub price_cents: i64,
    #[schema(minimum = 0)]
    pub stock: i32,
}

/// The product list.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductList {
    pub products: Vec<Product>,
}

/// One line of a checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub quantity: Quantity,
}

/// A checkout as clients send it, before validation.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(
    description = "A checkout: 1 to 20 lines, each product at most once. No other field is accepted."
)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    #[schema(schema_with = schema::checkout_items)]
    pub items: Vec<CheckoutBodyItem>,
}

/// One line as clients send it; numbers are wide so that huge values get a
/// clear validation message rather than a parse error.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(
    description = "One line of a checkout: a product, and how many units of it. No other field is accepted."
)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBodyItem {
    #[schema(value_type = ProductId)]
    pub product_id: i64,
    #[schema(value_type = Quantity)]
    pub quantity: i64,
}

/// A valid checkout: 1 to [`MAX_ITEMS`] lines, each product once, sorted by product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    pub items: Vec<OrderLine>,
}

impl Checkout {
    pub fn parse(body: &CheckoutBody) -> Result<Self, Invalid> {
        if body.items.is_empty() {
            return Err(Invalid("items must hold at least one line".into()));
        }
        if body.items.len() > MAX_ITEMS {
            return Err(Invalid(format!(
                "items may hold at most {MAX_ITEMS} lines, got {}",
                body.items.len()
            )));
        }
        let mut items = body
            .items
            .iter()
            .enumerate()
            .map(|(index, line)| {
                let at = |err: Invalid| Invalid(format!("items[{index}]: {}", err.0));
                Ok(OrderLine {
                    product_id: ProductId::parse(line.product_id).map_err(at)?,
                    quantity: Quantity::parse(line.quantity).map_err(at)?,
                })
            })
            .collect::<Result<Vec<_>, Invalid>>()?;
        // Sorted lines give every transaction the same lock order: no deadlocks.
        items.sort_by_key(|line| line.product_id);
        if let Some(pair) = items
            .windows(2)
            .find(|pair| pair[0].product_id == pair[1].product_id)
        {
            return Err(Invalid(format!(
                "product {} appears twice; send one line per product",
                pair[0].product_id
            )));
        }
        Ok(Self { items })
    }
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Payment authorised.
    Paid,
    /// Accepted while payments was slow or unavailable; the worker settles it.
    PaymentPending,
    /// The worker's later attempt was declined; the stock was released.
    PaymentFailed,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::PaymentPending => "payment_pending",
            Self::PaymentFailed => "payment_failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "paid" => Some(Self::Paid),
            "payment_pending" => Some(Self::PaymentPending),
            "payment_failed" => Some(Self::PaymentFailed),
            _ => None,
        }
    }
}

/// A line of a placed order, with the price it was sold at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderItem {
    pub product_id: ProductId,
    #[schema(value_type = Quantity)]
    pub quantity: i32,
    #[schema(minimum = 0)]
    pub unit_price_cents: i64,
}

/// A placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Order {
    pub id: OrderId,
    pub status: OrderStatus,
    #[schema(minimum = 0)]
    pub amount_cents: i64,
    #[schema(min_items = 1, max_items = 20)]
    pub items: Vec<OrderItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
}

/// Catalog: hold stock for an order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReservationRequest {
    pub order_id: OrderId,
    pub items: Vec<OrderLine>,
}

/// Catalog: the stock held for an order, with the prices to charge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reservation {
    pub order_id: OrderId,
    pub items: Vec<OrderItem>,
}

/// Payments: authorise an amount for an order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub order_id: OrderId,
    pub amount_cents: i64,
}

/// Payments: an authorisation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Authorization {
    pub id: String,
    pub order_id: OrderId,
    pub amount_cents: i64,
}

/// The schemas of the validated values, with the bounds [`ProductId::parse`],
/// [`Quantity::parse`] and [`Checkout::parse`] enforce, for the OpenAPI
/// document.
mod schema {
    use utoipa::openapi::schema::{
        ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
    };
    use utoipa::openapi::{Ref, RefOr};

    use super::{CheckoutBodyItem, MAX_ITEMS, MAX_QUANTITY, ProductId, Quantity};

    /// An integer written without a fraction or an exponent (`2`, never
    /// `2.0`), within `minimum..=maximum`.
    fn integer(format: KnownFormat, minimum: i64, maximum: i64, description: String) -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(format)))
            .minimum(Some(minimum))
            .maximum(Some(maximum))
            .description(Some(description))
            .examples([minimum])
            .into()
    }

    impl utoipa::PartialSchema for ProductId {
        fn schema() -> RefOr<Schema> {
            integer(
                KnownFormat::Int64,
                1,
                i64::MAX,
                "A product's id: a positive 64-bit integer, written without a fraction or an exponent.".to_owned(),
            )
            .into()
        }
    }

    impl utoipa::ToSchema for ProductId {}

    impl utoipa::PartialSchema for Quantity {
        fn schema() -> RefOr<Schema> {
            integer(
                KnownFormat::Int32,
                1,
                MAX_QUANTITY,
                format!("How many units of one product: 1 to {MAX_QUANTITY}, written without a fraction or an exponent."),
            )
            .into()
        }
    }

    impl utoipa::ToSchema for Quantity {}

    /// `CheckoutBody.items`: 1 to [`MAX_ITEMS`] lines, each product at most
    /// once (so no two lines are equal).
    pub fn checkout_items() -> Schema {
        ArrayBuilder::new()
            .items(Ref::from_schema_name(
                <CheckoutBodyItem as utoipa::ToSchema>::name(),
            ))
            .min_items(Some(1))
            .max_items(Some(MAX_ITEMS))
            .unique_items(true)
            .description(Some(format!(
                "1 to {MAX_ITEMS} lines; a product_id may appear in one line only."
            )))
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(items: &[(i64, i64)]) -> CheckoutBody {
        CheckoutBody {
            items: items
                .iter()
                .map(|&(product_id, quantity)| CheckoutBodyItem {
                    product_id,
                    quantity,
                })
                .collect(),
        }
    }

    #[test]
    fn a_valid_checkout_is_sorted_by_product() {
        let checkout = Checkout::parse(&body(&[(3, 1), (1, 2)])).unwrap();
        let ids: Vec<i64> = checkout.items.iter().map(|l| l.product_id.get()).collect();
        assert_eq!(ids, [1, 3]);
    }

    #[test]
    fn bad_checkouts_say_what_is_wrong() {
        let cases: &[(&[(i64, i64)], &str)] = &[
            (&[], "at least one line"),
            (
                &[(1, 0)],
                "items[0]: quantity must be between 1 and 100, got 0",
            ),
            (&[(1, -5)], "got -5"),
            (&[(1, 1_000_000_000_000)], "got 1000000000000"),
            (&[(0, 1)], "items[0]: product_id must be a positive integer"),
            (&[(2, 1), (2, 3)], "product 2 appears twice"),
        ];
        for (items, expected) in cases {
            let err = Checkout::parse(&body(items)).unwrap_err().to_string();
            assert!(err.contains(expected), "{items:?}: {err}");
        }
        let many: Vec<(i64, i64)> = (1..=21).map(|id| (id, 1)).collect();
        assert!(Checkout::parse(&body(&many)).is_err());
    }

    #[test]
    fn idempotency_keys_are_bounded_visible_ascii() {
        assert!(IdempotencyKey::parse("3f2a-key_1").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse("naïve").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    #[test]
    fn order_status_round_trips() {
        for status in [
            OrderStatus::Paid,
            OrderStatus::PaymentPending,
            OrderStatus::PaymentFailed,
        ] {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }
}
