//! The traffic mix: which route comes next, and with which random parameters.
//!
//! A [`Planner`] turns a seed into a sequence of abstract operations ([`Op`]).
//! Operations name products and orders by a random `pick`, resolved against
//! what the server has returned so far only when the request is sent, so the
//! sequence itself (routes, picks, quantities, retries) is a pure function of
//! the seed and the configuration.

use std::fmt;
use std::str::FromStr;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// A route of the public API, by its template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Route {
    /// `GET /api/products`
    #[serde(rename = "GET /api/products")]
    ListProducts,
    /// `GET /api/products/{id}`
    #[serde(rename = "GET /api/products/{id}")]
    GetProduct,
    /// `POST /api/orders`
    #[serde(rename = "POST /api/orders")]
    CreateOrder,
    /// `GET /api/orders/{id}`
    #[serde(rename = "GET /api/orders/{id}")]
    GetOrder,
}

impl Route {
    /// Every route, in the order reports list them.
    pub const ALL: [Route; 4] = [
        Route::ListProducts,
        Route::GetProduct,
        Route::CreateOrder,
        Route::GetOrder,
    ];

    /// The route template, e.g. `GET /api/products/{id}`.
    pub fn template(self) -> &'static str {
        match self {
            Route::ListProducts => "GET /api/products",
            Route::GetProduct => "GET /api/products/{id}",
            Route::CreateOrder => "POST /api/orders",
            Route::GetOrder => "GET /api/orders/{id}",
        }
    }

    /// A dense index, for per-route arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Route::ListProducts => 0,
            Route::GetProduct => 1,
            Route::CreateOrder => 2,
            Route::GetOrder => 3,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.template())
    }
}

/// Relative weights of the four kinds of request.
///
/// Parsed from `list=60,product=25,checkout=10,order=5` (any subset, missing
/// kinds weigh 0); the defaults are those numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mix {
    /// `GET /api/products`
    pub list: u32,
    /// `GET /api/products/{id}`
    pub product: u32,
    /// `POST /api/orders`
    pub checkout: u32,
    /// `GET /api/orders/{id}`
    pub order: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            list: 60,
            product: 25,
            checkout: 10,
            order: 5,
        }
    }
}

impl Mix {
    fn total(&self) -> u64 {
        u64::from(self.list)
            + u64::from(self.product)
            + u64::from(self.checkout)
            + u64::from(self.order)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "list={},product={},checkout={},order={}",
            self.list, self.product, self.checkout, self.order
        )
    }
}

/// Why a mix did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    /// A part was not `kind=weight`.
    #[error("expected kind=weight, got {0:?}")]
    Syntax(String),
    /// An unknown kind.
    #[error("unknown request kind {0:?} (expected list, product, checkout or order)")]
    Kind(String),
    /// A weight that is not a non-negative integer.
    #[error("weight of {0} is not a non-negative integer")]
    Weight(String),
    /// Every weight is 0.
    #[error("at least one weight must be positive")]
    Empty,
}

impl FromStr for Mix {
    type Err = MixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut mix = Mix {
            list: 0,
            product: 0,
            checkout: 0,
            order: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = part
                .split_once('=')
                .ok_or_else(|| MixError::Syntax(part.to_owned()))?;
            let kind = kind.trim();
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| MixError::Weight(kind.to_owned()))?;
            let slot = match kind {
                "list" => &mut mix.list,
                "product" => &mut mix.product,
                "checkout" => &mut mix.checkout,
                "order" => &mut mix.order,
                other => return Err(MixError::Kind(other.to_owned())),
            };
            *slot = weight;
        }
        if mix.total() == 0 {
            return Err(MixError::Empty);
        }
        Ok(mix)
    }
}

/// One planned request. Picks are resolved when the request is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    ListProducts,
    GetProduct {
        pick: u32,
    },
    Checkout {
        /// `(product pick, quantity)`, 1 to `max_items` of them.
        items: Vec<(u32, u32)>,
        /// Send the same request again, with the same key, after the answer.
        retry: bool,
    },
    GetOrder {
        pick: u32,
    },
}

/// One planned request and the customer it is sent as (a pick, resolved
/// against the run's customers when it is sent; unused without customers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) op: Op,
    pub(crate) customer: u32,
}

impl Op {
    pub(crate) fn route(&self) -> Route {
        match self {
            Op::ListProducts => Route::ListProducts,
            Op::GetProduct { .. } => Route::GetProduct,
            Op::Checkout { .. } => Route::CreateOrder,
            Op::GetOrder { .. } => Route::GetOrder,
        }
    }
}

/// Draws the next operation of the mix from a seeded generator.
#[derive(Debug)]
pub(crate) struct Planner {
    rng: SmallRng,
    mix: Mix,
    retry_ratio: f64,
    max_items: u32,
    max_quantity: u32,
}

impl Planner {
    pub(crate) fn new(
        seed: u64,
        mix: Mix,
        retry_ratio: f64,
        max_items: u32,
        max_quantity: u32,
    ) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            mix,
            retry_ratio: retry_ratio.clamp(0.0, 1.0),
            max_items: max_items.max(1),
            max_quantity: max_quantity.max(1),
        }
    }

    /// The next request and the customer who sends it.
    pub(crate) fn next_step(&mut self) -> Step {
        let op = self.next_op();
        Step {
            op,
            customer: self.rng.random(),
        }
    }

    fn next_op(&mut self) -> Op {
        let total = self.mix.total().max(1);
        let mut draw = self.rng.random_range(0..total);
        let mut kinds = [
            (self.mix.list, Route::ListProducts),
            (self.mix.product, Route::GetProduct),
            (self.mix.checkout, Route::CreateOrder),
            (self.mix.order, Route::GetOrder),
        ]
        .into_iter();
        let route = loop {
            match kinds.next() {
                Some((weight, route)) if draw < u64::from(weight) => break route,
                Some((weight, _)) => draw -= u64::from(weight),
                // Unreachable with total > 0; browsing is the safe answer.
                None => break Route::ListProducts,
            }
        };
        match route {
            Route::ListProducts => Op::ListProducts,
            Route::GetProduct => Op::GetProduct {
                pick: self.rng.random(),
            },
            Route::CreateOrder => {
                let n = self.rng.random_range(1..=self.max_items);
                let items = (0..n)
                    .map(|_| {
                        (
                            self.rng.random(),
                            self.rng.random_range(1..=self.max_quantity),
                        )
                    })
                    .collect();
                Op::Checkout {
                    items,
                    retry: self.rng.random_bool(self.retry_ratio),
                }
            }
            Route::GetOrder => Op::GetOrder {
                pick: self.rng.random(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_prints() {
        let mix: Mix = "list=1, checkout=3".parse().unwrap();
        assert_eq!(
            mix,
            Mix {
                list: 1,
                product: 0,
                checkout: 3,
                order: 0
            }
        );
        assert_eq!(
            Mix::default().to_string().parse::<Mix>(),
            Ok(Mix::default())
        );
        assert_eq!("list=0".parse::<Mix>(), Err(MixError::Empty));
        assert!(matches!("browse=1".parse::<Mix>(), Err(MixError::Kind(_))));
        assert!(matches!("list=-1".parse::<Mix>(), Err(MixError::Weight(_))));
        assert!(matches!("list".parse::<Mix>(), Err(MixError::Syntax(_))));
    }

    #[test]
    fn planner_is_deterministic_under_a_seed() {
        let plan = |seed| {
            let mut p = Planner::new(seed, Mix::default(), 0.5, 3, 2);
            (0..200).map(|_| p.next_step()).collect::<Vec<_>>()
        };
        assert_eq!(plan(7), plan(7));
        assert_ne!(plan(7), plan(8));
    }

    #[test]
    fn planner_follows_the_weights() {
        let mut p = Planner::new(1, Mix::default(), 0.05, 3, 2);
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            counts[p.next_step().op.route().index()] += 1;
        }
        // 60/25/10/5 of 10 000, with generous slack.
        assert!((5_700..6_300).contains(&counts[0]), "{counts:?}");
        assert!((2_300..2_700).contains(&counts[1]), "{counts:?}");
        assert!((850..1_150).contains(&counts[2]), "{counts:?}");
        assert!((380..620).contains(&counts[3]), "{counts:?}");
    }

    #[test]
    fn checkouts_have_one_to_max_items() {
        let mix = Mix {
            list: 0,
            product: 0,
            checkout: 1,
            order: 0,
        };
        let mut p = Planner::new(3, mix, 1.0, 3, 2);
        for _ in 0..100 {
            match p.next_step().op {
                Op::Checkout { items, retry } => {
                    assert!((1..=3).contains(&items.len()));
                    assert!(items.iter().all(|&(_, q)| (1..=2).contains(&q)));
                    assert!(retry);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
