//! The bad-input campaign: proptest-generated hostile requests for the
//! public API, and the oracle every answer must satisfy.
//!
//! What it generates: malformed and truncated JSON, wrong types, huge,
//! negative and fractional numbers, empty and oversize lists and bodies, odd
//! unicode, abused headers (Idempotency-Key, Content-Type, deadlines, trace
//! context, sheer size), unknown paths and methods, and every kind of bad
//! bearer token (malformed, expired, not yet valid, wrong audience, wrong
//! issuer, `alg: none`, HS256 with the public key, unknown `kid`, tampered,
//! forged with an untrusted key), mixed with valid ones so that the checks
//! behind authentication are reached too.
//!
//! The oracle ([`judge`]): no answer is 5xx; every error is
//! `application/problem+json` whose `status` is the answer's; no body or
//! header names an internal detail (SQL, a source path, a stack, a
//! dependency's name).

use std::collections::BTreeMap;

use faultline_auth::{Minter, Role, forge};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

/// One hostile request.
#[derive(Debug, Clone)]
pub struct Case {
    pub method: String,
    /// The path and query, already percent-encoded where it must be.
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
    /// What kind of case it is, for the report.
    pub kind: &'static str,
}

/// The tokens a case can carry: valid ones and every kind of bad one.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub valid: Vec<String>,
    pub bad: Vec<(&'static str, String)>,
}

impl Tokens {
    /// Valid tokens for two customers and an admin, and the bad ones of
    /// [`forge::all`] plus one signed by an untrusted key and some garbage.
    pub fn new(minter: &Minter, untrusted: &Minter) -> anyhow::Result<Self> {
        let ttl = std::time::Duration::from_secs(3600);
        let valid = vec![
            minter.token("campaign-a", Role::Customer, ttl)?,
            minter.token("campaign-b", Role::Customer, ttl)?,
            minter.token("campaign-admin", Role::Admin, ttl)?,
        ];
        let mut bad = forge::all(minter, "campaign-mallory");
        bad.push((
            "signature",
            untrusted.token("campaign-mallory", Role::Admin, ttl)?,
        ));
        bad.push(("malformed", "a.b.c".to_owned()));
        bad.push(("malformed", "eyJhbGciOiJFZERTQSJ9.e30.".to_owned()));
        bad.push(("malformed", "x".repeat(5000)));
        Ok(Self { valid, bad })
    }
}

fn json_text(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// Values that are not a quantity (or a product id) the server accepts.
fn bad_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(873542.0)),
        Just(json!(1.5)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(101)),
        Just(json!(i64::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(1e300)),
        Just(json!(-0.0)),
        Just(json!("1")),
        Just(json!(true)),
        Just(json!(null)),
        Just(json!([])),
        Just(json!({})),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
    ]
}

/// Strings a careless parser chokes on.
fn odd_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("\u{0}".to_owned()),
        Just("\u{202e}gnp.exe".to_owned()),
        Just("🦀".repeat(100)),
        Just("'; DROP TABLE orders; --".to_owned()),
        Just("../../../../etc/passwd".to_owned()),
        Just("%00%ff%2e%2e".to_owned()),
        Just("\u{feff}\u{200b}".to_owned()),
        "\\PC{0,40}",
        ".{0,200}",
    ]
}

/// A checkout body that is wrong in one of many ways.
fn bad_checkout() -> impl Strategy<Value = (Vec<u8>, &'static str)> {
    let item = (bad_number(), bad_number())
        .prop_map(|(product_id, quantity)| json!({"product_id": product_id, "quantity": quantity}));
    let valid_item = (1_i64..=12, 1_i64..=100)
        .prop_map(|(product_id, quantity)| json!({"product_id": product_id, "quantity": quantity}));
    prop_oneof![
        // A valid body cut short.
        (
            prop::collection::vec(valid_item.clone(), 1..4),
            any::<prop::sample::Index>()
        )
            .prop_map(|(items, cut)| {
                let text = json_text(&json!({ "items": items }));
                let at = cut.index(text.len().max(1));
                (text[..at].to_vec(), "truncated JSON")
            }),
        prop::collection::vec(item, 0..5)
            .prop_map(|items| (json_text(&json!({ "items": items })), "wrong numbers")),
        Just((json_text(&json!({ "items": [] })), "empty items")),
        prop::collection::vec(valid_item.clone(), 21..60)
            .prop_map(|items| (json_text(&json!({ "items": items })), "too many items")),
        valid_item.clone().prop_map(|item| (
            json_text(&json!({ "items": [item.clone(), item] })),
            "duplicate product"
        )),
        odd_text().prop_map(|text| (json_text(&json!({ "items": text })), "items not a list")),
        odd_text().prop_map(|text| (
            json_text(&json!({ "items": [{"product_id": text, "quantity": 1}] })),
            "odd unicode"
        )),
        odd_text().prop_map(|text| (text.into_bytes(), "not JSON")),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|bytes| (bytes, "random bytes")),
        (1_usize..3000).prop_map(|depth| {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            (
                format!("{{\"items\": {text}}}").into_bytes(),
                "deep nesting",
            )
        }),
        (65_536_usize..200_000).prop_map(|size| {
            let padding = "x".repeat(size);
            (
                json_text(&json!({ "items": [{"product_id": 1, "quantity": 1}], "pad": padding })),
                "oversize body",
            )
        }),
        Just((
            json_text(
                &json!({ "items": [{"product_id": 1, "quantity": 1}], "extra": {"nested": [1, 2]} })
            ),
            "extra fields"
        )),
        Just((
            b"{\"items\": [{\"product_id\": 1, \"quantity\": 1}]} trailing".to_vec(),
            "trailing garbage"
        )),
        Just((vec![0xff, 0xfe, 0x7b, 0x7d], "invalid UTF-8")),
        Just((b"{\"items\": \"\\ud800\"}".to_vec(), "lone surrogate")),
        valid_item.prop_map(|item| (json_text(&json!({ "items": [item] })), "valid body")),
    ]
}

/// A path: the API's, with hostile parameters, or none of its own.
fn path() -> impl Strategy<Value = (String, String, &'static str)> {
    let id = prop_oneof![
        Just("1".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("1.5".to_owned()),
        Just("%2e%2e%2f".to_owned()),
        Just("%00".to_owned()),
        Just("%F0%9F%A6%80".to_owned()),
        Just(uuid::Uuid::nil().to_string()),
        Just(uuid::Uuid::max().to_string()),
        "[a-zA-Z0-9_-]{0,80}",
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
    ];
    let method = prop_oneof![
        4 => Just("GET"),
        4 => Just("POST"),
        1 => Just("PUT"),
        1 => Just("DELETE"),
        1 => Just("PATCH"),
        1 => Just("OPTIONS"),
    ];
    (
        method,
        prop_oneof![
            Just(("/api/products".to_owned(), "list")),
            id.clone()
                .prop_map(|id| (format!("/api/products/{id}"), "product")),
            Just(("/api/orders".to_owned(), "checkout")),
            id.prop_map(|id| (format!("/api/orders/{id}"), "order")),
            "/[a-z./%0-9]{0,60}".prop_map(|p| (p, "unknown path")),
            Just(("/api/products?limit=-1&offset=%ff".to_owned(), "query")),
            Just(("/openapi.json".to_owned(), "openapi")),
        ],
    )
        .prop_map(|(method, (path, kind))| (method.to_owned(), path, kind))
}

/// The Authorization headers a case may carry.
fn authorization(tokens: &Tokens) -> impl Strategy<Value = Vec<Vec<u8>>> + use<> {
    let valid = tokens.valid.clone();
    let bad = tokens.bad.clone();
    prop_oneof![
        3 => prop::sample::select(valid).prop_map(|t| vec![format!("Bearer {t}").into_bytes()]),
        3 => prop::sample::select(bad).prop_map(|(_, t)| vec![format!("Bearer {t}").into_bytes()]),
        1 => Just(Vec::new()),
        1 => prop_oneof![
            Just(b"Basic YWxpY2U6cGFzc3dvcmQ=".to_vec()),
            Just(b"Bearer".to_vec()),
            Just(b"Bearer  ".to_vec()),
            Just(b"bearer a b c".to_vec()),
            Just(b"Bearer \xff\xfe".to_vec()),
            Just(format!("Bearer {}", "A".repeat(9000)).into_bytes()),
        ]
        .prop_map(|value| vec![value]),
        1 => Just(vec![b"Bearer a.b.c".to_vec(), b"Bearer d.e.f".to_vec()]),
    ]
}

/// Other headers, abused.
fn extra_headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let one = prop_oneof![
        prop_oneof![
            Just(Vec::new()),
            Just(b"   ".to_vec()),
            Just("k".repeat(300).into_bytes()),
            Just(b"key with spaces".to_vec()),
            Just(b"\xc3\xa9t\xc3\xa9".to_vec()),
            "[ -~]{1,255}".prop_map(String::into_bytes),
        ]
        .prop_map(|v| ("idempotency-key".to_owned(), v)),
        prop_oneof![
            Just(b"text/plain".to_vec()),
            Just(b"application/json; charset=latin1".to_vec()),
            Just(b"multipart/form-data; boundary=x".to_vec()),
            Just(b"application/xml".to_vec()),
            Just(Vec::new()),
        ]
        .prop_map(|v| ("content-type".to_owned(), v)),
        prop_oneof![
            Just(b"-1".to_vec()),
            Just(b"0".to_vec()),
            Just(b"99999999999999999999".to_vec()),
            Just(b"soon".to_vec()),
        ]
        .prop_map(|v| ("x-request-timeout-ms".to_owned(), v)),
        prop_oneof![
            Just(b"00-zzzz-yyyy-01".to_vec()),
            Just(b"ff-00000000000000000000000000000000-0000000000000000-ff".to_vec()),
            Just("00-".repeat(500).into_bytes()),
        ]
        .prop_map(|v| ("traceparent".to_owned(), v)),
        "[a-z]{1,20}".prop_map(|name| (format!("x-{name}"), "v".repeat(4000).into_bytes())),
        Just((
            "accept".to_owned(),
            b"application/xml;q=2, */*;q=-1".to_vec()
        )),
        Just((
            "x-forwarded-for".to_owned(),
            b"not-an-ip, 999.1.1.1".to_vec()
        )),
    ];
    prop::collection::vec(one, 0..4)
}

/// Every kind of case.
pub fn cases(tokens: &Tokens) -> impl Strategy<Value = Case> + use<> {
    (
        path(),
        authorization(tokens),
        extra_headers(),
        bad_checkout(),
        proptest::bool::weighted(0.9),
    )
        .prop_map(
            |((method, path, kind), authorizations, extra, (body, body_kind), with_key)| {
                let mut headers: Vec<(String, Vec<u8>)> = authorizations
                    .into_iter()
                    .map(|value| ("authorization".to_owned(), value))
                    .collect();
                let sends_body = method == "POST" || method == "PUT" || method == "PATCH";
                if sends_body {
                    headers.push(("content-type".to_owned(), b"application/json".to_vec()));
                    if with_key {
                        headers.push((
                            "idempotency-key".to_owned(),
                            uuid::Uuid::new_v4().to_string().into_bytes(),
                        ));
                    }
                }
                // Abused headers replace the defaults of the same name.
                for (name, _) in &extra {
                    headers.retain(|(existing, _)| existing != name);
                }
                headers.extend(extra);
                let kind = if sends_body && kind == "checkout" {
                    body_kind
                } else {
                    kind
                };
                Case {
                    method,
                    path,
                    headers,
                    body: sends_body.then_some(body),
                    kind,
                }
            },
        )
}

/// `count` cases drawn with a fixed seed (the same cases every run).
pub fn sample(tokens: &Tokens, count: usize, seed: u64) -> anyhow::Result<Vec<Case>> {
    let mut seed_bytes = [0_u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strategy = cases(tokens);
    (0..count)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .map(|tree| tree.current())
                .map_err(|reason| anyhow::anyhow!("cannot generate a case: {reason}"))
        })
        .collect()
}

/// What must never appear in an answer: internal details.
pub const LEAKS: &[&str] = &[
    "sqlx",
    "postgres",
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    "panicked",
    "backtrace",
    "src/",
    ".rs:",
    "/usr/",
    "/root/",
    "/home/",
    "hyper",
    "reqwest",
    "tokio",
    "axum",
    "tower",
    "lapin",
    "rabbitmq",
    "redis",
    "jsonwebtoken",
    "thread '",
];

/// An answer, as the oracle sees it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The request's own text, lowercased: an answer may echo it (a 404 names
/// the path it did not find) without leaking anything.
fn echoable(case: &Case) -> String {
    let mut text = case.path.clone();
    for (_, value) in &case.headers {
        text.push_str(&String::from_utf8_lossy(value));
    }
    if let Some(body) = &case.body {
        text.push_str(&String::from_utf8_lossy(body));
    }
    text.to_lowercase()
}

/// What is wrong with `answer` to `case`, if anything.
pub fn judge(case: &Case, answer: &Answer) -> Result<(), String> {
    if answer.status >= 500 {
        return Err(format!("answered {}", answer.status));
    }
    let lowered_body = String::from_utf8_lossy(&answer.body).to_lowercase();
    let echoed = echoable(case);
    for leak in LEAKS {
        let leak = leak.to_lowercase();
        if echoed.contains(&leak) {
            continue;
        }
        if lowered_body.contains(&leak) {
            return Err(format!("the body names {leak:?}"));
        }
        for (name, value) in &answer.headers {
            if value.to_lowercase().contains(&leak) {
                return Err(format!("header {name} names {leak:?}"));
            }
        }
    }
    if answer.status >= 400 {
        let content_type = answer
            .headers
            .iter()
            .find(|(name, _)| name == "content-type")
            .map(|(_, value)| value.as_str());
        if content_type != Some("application/problem+json") {
            return Err(format!(
                "a {} answered as {content_type:?}, not problem+json",
                answer.status
            ));
        }
        let problem: Value = serde_json::from_slice(&answer.body)
            .map_err(|err| format!("the problem is not JSON: {err}"))?;
        if problem["status"] != json!(answer.status) {
            return Err(format!("the problem says status {}", problem["status"]));
        }
        if problem["title"].as_str().is_none_or(str::is_empty) {
            return Err("the problem has no title".to_owned());
        }
    }
    Ok(())
}

/// Counts by status, for the report.
pub type Histogram = BTreeMap<u16, u64>;

#[cfg(test)]
mod tests {
    use faultline_auth::SigningKey;

    use super::*;

    fn tokens() -> Tokens {
        let minter = Minter::new(SigningKey::from_seed("k", [1; 32]).unwrap());
        let untrusted = Minter::new(SigningKey::from_seed("k", [2; 32]).unwrap());
        Tokens::new(&minter, &untrusted).unwrap()
    }

    #[test]
    fn the_sample_is_reproducible_and_covers_every_kind() {
        let tokens = tokens();
        let a = sample(&tokens, 400, 7).unwrap();
        let b = sample(&tokens, 400, 7).unwrap();
        assert_eq!(
            a.iter().map(|c| (&c.method, &c.path)).collect::<Vec<_>>(),
            b.iter().map(|c| (&c.method, &c.path)).collect::<Vec<_>>()
        );
        let kinds: std::collections::BTreeSet<_> = a.iter().map(|c| c.kind).collect();
        for kind in [
            "list",
            "product",
            "order",
            "truncated JSON",
            "wrong numbers",
            "unknown path",
        ] {
            assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
        }
        assert!(
            a.iter()
                .any(|c| c.headers.iter().any(|(n, _)| n == "authorization"))
        );
    }

    #[test]
    fn the_oracle_refuses_5xx_leaks_and_non_problems() {
        let case = Case {
            method: "GET".into(),
            path: "/api/tokio".into(),
            headers: Vec::new(),
            body: None,
            kind: "unknown path",
        };
        let check = |answer: &Answer| judge(&case, answer);
        let problem = |status: u16, body: &str| Answer {
            status,
            headers: vec![("content-type".into(), "application/problem+json".into())],
            body: body.as_bytes().to_vec(),
        };
        assert!(check(&problem(404, r#"{"title":"Not Found","status":404}"#)).is_ok());
        assert!(check(&problem(503, r#"{"title":"x","status":503}"#)).is_err());
        assert!(
            check(&problem(
                400,
                r#"{"title":"x","status":400,"detail":"sqlx: error"}"#
            ))
            .is_err()
        );
        assert!(check(&problem(400, r#"{"title":"x","status":422}"#)).is_err());
        let plain = Answer {
            status: 405,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: Vec::new(),
        };
        assert!(check(&plain).is_err());
        // Echoing the request's own words is not a leak.
        assert!(
            check(&problem(
                404,
                r#"{"title":"x","status":404,"detail":"no resource at /api/tokio"}"#
            ))
            .is_ok()
        );
    }
}
