//! Requests generated from an OpenAPI document alone, as a schema-driven
//! fuzzer (schemathesis, say) sends them, and what the document says may
//! come back.
//!
//! [`ApiDocument::requests`] is a proptest [`Strategy`] over every operation
//! of the document: the method; the path with its path parameters filled
//! from their schemas (percent-encoded); the header and query parameters
//! (the required ones always, the optional ones sometimes), strings from
//! their `pattern` and lengths; the JSON body from the request body's schema,
//! honouring `type`, `format`, `minimum`/`maximum` (and the exclusive ones),
//! `multipleOf`, `minLength`/`maxLength`/`pattern`, `minItems`/`maxItems`/
//! `uniqueItems`, `required`, `additionalProperties`, `enum`/`const` and
//! `allOf`/`anyOf`/`oneOf`, with every `$ref` resolved in the document.
//! Integers lean towards their bounds and the values just above the minimum,
//! as fuzzers do, so that small ids name things that exist. Whether to send a
//! bearer token follows the operation's `security`.
//!
//! [`Operation::documents`] says whether a status is one the operation lists,
//! and [`ApiDocument::check_answer`] whether an answer's content type and
//! JSON body are what the document says for its status ([`ApiDocument::validate`]
//! checks a value against a schema, with the same keywords; `pattern` only in
//! generation, since no regex engine is at hand).
//!
//! Integers are strict: a JSON number with a fraction or an exponent (`2.0`)
//! is not an `integer` here, as the shop's server refuses it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Just, Union, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Map, Value};

/// Why a document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// A `$ref` that does not resolve within the document.
    #[error("unresolvable $ref {0}")]
    Ref(String),
    /// A part the document must have but does not.
    #[error("{0}")]
    Malformed(String),
    /// A keyword or form this generator does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A schema no value can satisfy (e.g. `minimum` above `maximum`).
    #[error("unsatisfiable schema at {0}")]
    Unsatisfiable(String),
    /// proptest could not draw a value.
    #[error("generation failed: {0}")]
    Generation(String),
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamIn {
    Path,
    Query,
    Header,
}

/// One operation of the document.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path template, e.g. `/api/orders/{id}`.
    pub path: String,
    /// The statuses the document lists.
    pub statuses: BTreeSet<u16>,
    /// Status ranges the document lists (`4XX` is 4).
    pub status_ranges: BTreeSet<u16>,
    /// Whether it lists a `default` answer (any status).
    pub has_default: bool,
    /// Whether the operation can only be called with a credential.
    pub requires_auth: bool,
    /// Whether a credential may be sent (required or optional).
    pub accepts_auth: bool,
}

impl Operation {
    /// `POST /api/orders`.
    pub fn id(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Whether `status` is an answer the document lists for the operation.
    pub fn documents(&self, status: u16) -> bool {
        self.has_default
            || self.statuses.contains(&status)
            || self.status_ranges.contains(&(status / 100))
    }
}

/// One generated request.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedRequest {
    /// The operation's index in [`ApiDocument::operations`].
    pub operation: usize,
    pub method: String,
    /// The path with its parameters filled, and the query string if any.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The JSON body, if the operation takes one and this request sends it.
    pub body: Option<Value>,
    /// Whether to send a bearer token: always where the operation requires
    /// one, sometimes where it is optional.
    pub bearer: bool,
}

/// A parsed document.
#[derive(Debug, Clone)]
pub struct ApiDocument {
    doc: Value,
    operations: Vec<Operation>,
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// How deep `$ref`s and nested schemas may go: a recursive schema stops here.
const MAX_DEPTH: usize = 16;
/// Unbounded lists and strings get at most this many more than their minimum.
const UNBOUNDED_EXTRA: u64 = 8;

impl ApiDocument {
    /// Reads the operations of `doc`.
    pub fn new(doc: Value) -> Result<Self, DocError> {
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .ok_or_else(|| DocError::Malformed("the document has no paths".into()))?;
        let global_security = doc.get("security");
        let mut operations = Vec::new();
        for (path, item) in paths {
            for method in METHODS {
                let Some(op) = item.get(method) else {
                    continue;
                };
                let responses = op
                    .get("responses")
                    .and_then(Value::as_object)
                    .ok_or_else(|| DocError::Malformed(format!("{method} {path}: no responses")))?;
                let mut statuses = BTreeSet::new();
                let mut status_ranges = BTreeSet::new();
                let mut has_default = false;
                for key in responses.keys() {
                    if key == "default" {
                        has_default = true;
                    } else if let Ok(status) = key.parse::<u16>() {
                        statuses.insert(status);
                    } else if let Some(class) = key
                        .strip_suffix("XX")
                        .and_then(|class| class.parse::<u16>().ok())
                    {
                        status_ranges.insert(class);
                    } else {
                        return Err(DocError::Malformed(format!(
                            "{method} {path}: response key {key}"
                        )));
                    }
                }
                let security = op
                    .get("security")
                    .or(global_security)
                    .and_then(Value::as_array);
                let requirements = security.map(Vec::as_slice).unwrap_or_default();
                let anonymous = requirements
                    .iter()
                    .any(|r| r.as_object().is_some_and(Map::is_empty));
                let accepts_auth = requirements
                    .iter()
                    .any(|r| r.as_object().is_some_and(|r| !r.is_empty()));
                operations.push(Operation {
                    method: method.to_ascii_uppercase(),
                    path: path.clone(),
                    statuses,
                    status_ranges,
                    has_default,
                    requires_auth: accepts_auth && !anonymous,
                    accepts_auth,
                });
            }
        }
        if operations.is_empty() {
            return Err(DocError::Malformed("the document has no operations".into()));
        }
        Ok(Self { doc, operations })
    }

    /// The document.
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// Every operation, in the document's order.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// The operation `method path` (`method` in any case).
    pub fn operation(&self, method: &str, path: &str) -> Option<&Operation> {
        self.operations
            .iter()
            .find(|op| op.method.eq_ignore_ascii_case(method) && op.path == path)
    }

    /// The operation's object in the document.
    fn operation_object(&self, op: &Operation) -> Result<&Value, DocError> {
        self.doc["paths"][&op.path]
            .get(op.method.to_ascii_lowercase())
            .ok_or_else(|| DocError::Malformed(format!("{} vanished", op.id())))
    }

    /// Follows `$ref`s (`#/...` pointers into the document).
    pub fn resolve<'a>(&'a self, mut value: &'a Value) -> Result<&'a Value, DocError> {
        for _ in 0..MAX_DEPTH {
            let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
                return Ok(value);
            };
            value = reference
                .strip_prefix('#')
                .and_then(|pointer| self.doc.pointer(pointer))
                .ok_or_else(|| DocError::Ref(reference.to_owned()))?;
        }
        Err(DocError::Unsupported("a $ref chain deeper than 16".into()))
    }

    /// Requests over every operation, each operation as likely as another.
    pub fn requests(&self) -> Result<BoxedStrategy<GeneratedRequest>, DocError> {
        let per_operation = (0..self.operations.len())
            .map(|index| self.requests_for(index))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Union::new(per_operation).boxed())
    }

    /// Requests of the operation at `index`.
    pub fn requests_for(&self, index: usize) -> Result<BoxedStrategy<GeneratedRequest>, DocError> {
        let op = self
            .operations
            .get(index)
            .ok_or_else(|| DocError::Malformed(format!("no operation {index}")))?
            .clone();
        let object = self.operation_object(&op)?;
        let params = self.parameters(&op, object)?;
        let mut param_strategies = Vec::new();
        for param in &params {
            let value = self.param_strategy(param)?;
            let value = if param.required {
                value.prop_map(Some).boxed()
            } else {
                proptest::option::of(value).boxed()
            };
            let (name, place) = (param.name.clone(), param.place);
            param_strategies.push(value.prop_map(move |v| (name.clone(), place, v)).boxed());
        }
        let body = self.body_strategy(&op, object)?;
        let bearer = if op.requires_auth {
            Just(true).boxed()
        } else if op.accepts_auth {
            any::<bool>().boxed()
        } else {
            Just(false).boxed()
        };
        Ok((param_strategies, body, bearer)
            .prop_map(move |(params, body, bearer)| {
                let mut path = op.path.clone();
                let mut query = Vec::new();
                let mut headers = Vec::new();
                for (name, place, value) in params {
                    let Some(value) = value else { continue };
                    match place {
                        ParamIn::Path => {
                            path = path.replace(&format!("{{{name}}}"), &percent_encode(&value));
                        }
                        ParamIn::Query => {
                            query.push(format!(
                                "{}={}",
                                percent_encode(&name),
                                percent_encode(&value)
                            ));
                        }
                        ParamIn::Header => headers.push((name, value)),
                    }
                }
                if !query.is_empty() {
                    path = format!("{path}?{}", query.join("&"));
                }
                GeneratedRequest {
                    operation: index,
                    method: op.method.clone(),
                    path,
                    headers,
                    body,
                    bearer,
                }
            })
            .boxed())
    }

    /// The path-level parameters overridden by the operation's own.
    fn parameters(&self, op: &Operation, object: &Value) -> Result<Vec<Param>, DocError> {
        let mut params: Vec<Param> = Vec::new();
        let shared = self.doc["paths"][&op.path].get("parameters");
        for list in [shared, object.get("parameters")].into_iter().flatten() {
            let list = list
                .as_array()
                .ok_or_else(|| DocError::Malformed(format!("{}: parameters", op.id())))?;
            for raw in list {
                let raw = self.resolve(raw)?;
                let name = raw["name"]
                    .as_str()
                    .ok_or_else(|| {
                        DocError::Malformed(format!("{}: a nameless parameter", op.id()))
                    })?
                    .to_owned();
                let place = match raw["in"].as_str() {
                    Some("path") => ParamIn::Path,
                    Some("query") => ParamIn::Query,
                    Some("header") => ParamIn::Header,
                    other => {
                        return Err(DocError::Unsupported(format!(
                            "{}: parameter {name} in {other:?}",
                            op.id()
                        )));
                    }
                };
                let schema = raw.get("schema").cloned().ok_or_else(|| {
                    DocError::Unsupported(format!("{}: parameter {name} without a schema", op.id()))
                })?;
                let required = place == ParamIn::Path || raw["required"] == true;
                params.retain(|p| !(p.name == name && p.place == place));
                params.push(Param {
                    name,
                    place,
                    required,
                    schema,
                });
            }
        }
        Ok(params)
    }

    /// A parameter's value, as text.
    fn param_strategy(&self, param: &Param) -> Result<BoxedStrategy<String>, DocError> {
        let context = Context {
            ascii: param.place != ParamIn::Query,
            at: format!("parameter {}", param.name),
        };
        let values = self.schema_strategy_in(&param.schema, &context, 0)?;
        Ok(values.prop_map(|value| plain(&value)).boxed())
    }

    /// The JSON body: `None` when the operation takes none, or, when it is
    /// optional, sometimes.
    fn body_strategy(
        &self,
        op: &Operation,
        object: &Value,
    ) -> Result<BoxedStrategy<Option<Value>>, DocError> {
        let Some(body) = object.get("requestBody") else {
            return Ok(Just(None).boxed());
        };
        let body = self.resolve(body)?;
        let content = body["content"].as_object().ok_or_else(|| {
            DocError::Malformed(format!("{}: requestBody without content", op.id()))
        })?;
        let schema = content
            .iter()
            .find(|(media, _)| is_json(media))
            .and_then(|(_, media)| media.get("schema"))
            .ok_or_else(|| {
                DocError::Unsupported(format!("{}: a request body that is not JSON", op.id()))
            })?;
        let context = Context {
            ascii: false,
            at: format!("{} body", op.id()),
        };
        let values = self.schema_strategy_in(schema, &context, 0)?;
        Ok(if body["required"] == true {
            values.prop_map(Some).boxed()
        } else {
            proptest::option::of(values).boxed()
        })
    }

    /// Values of `schema`.
    pub fn schema_strategy(&self, schema: &Value) -> Result<BoxedStrategy<Value>, DocError> {
        let context = Context {
            ascii: false,
            at: "schema".into(),
        };
        self.schema_strategy_in(schema, &context, 0)
    }

    fn schema_strategy_in(
        &self,
        schema: &Value,
        context: &Context,
        depth: usize,
    ) -> Result<BoxedStrategy<Value>, DocError> {
        if depth > MAX_DEPTH {
            return Err(DocError::Unsupported(format!(
                "{}: schemas nested deeper than {MAX_DEPTH}",
                context.at
            )));
        }
        let schema = self.resolve(schema)?;
        if schema == &Value::Bool(true) || schema.as_object().is_some_and(Map::is_empty) {
            return Ok(any_json().boxed());
        }
        let Some(object) = schema.as_object() else {
            return Err(DocError::Unsatisfiable(context.at.clone()));
        };
        if let Some(parts) = object.get("allOf") {
            let merged = self.merge_all_of(object, parts)?;
            return self.schema_strategy_in(&merged, context, depth + 1);
        }
        for keyword in ["oneOf", "anyOf"] {
            if let Some(parts) = object.get(keyword) {
                let parts = parts
                    .as_array()
                    .filter(|parts| !parts.is_empty())
                    .ok_or_else(|| DocError::Malformed(format!("{}: {keyword}", context.at)))?;
                let choices = parts
                    .iter()
                    .map(|part| self.schema_strategy_in(part, context, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(Union::new(choices).boxed());
            }
        }
        if let Some(value) = object.get("const") {
            return Ok(Just(value.clone()).boxed());
        }
        if let Some(values) = object.get("enum") {
            let values = values
                .as_array()
                .filter(|values| !values.is_empty())
                .ok_or_else(|| DocError::Unsatisfiable(format!("{}: enum", context.at)))?;
            return Ok(proptest::sample::select(values.clone()).boxed());
        }
        let mut types = schema_types(object);
        if object.get("nullable") == Some(&Value::Bool(true)) && !types.contains(&"null") {
            types.push("null");
        }
        let choices = types
            .iter()
            .map(|kind| self.typed_strategy(kind, object, context, depth))
            .collect::<Result<Vec<_>, _>>()?;
        match choices.len() {
            0 => Err(DocError::Unsatisfiable(context.at.clone())),
            1 => Ok(choices
                .into_iter()
                .next()
                .unwrap_or_else(|| any_json().boxed())),
            _ => Ok(Union::new(choices).boxed()),
        }
    }

    /// `allOf` (and the schema's own keywords) as one schema.
    fn merge_all_of(&self, object: &Map<String, Value>, parts: &Value) -> Result<Value, DocError> {
        let mut merged = object.clone();
        merged.remove("allOf");
        let parts = parts
            .as_array()
            .ok_or_else(|| DocError::Malformed("allOf is not a list".into()))?;
        for part in parts {
            let part = self.resolve(part)?;
            let Some(part) = part.as_object() else {
                continue;
            };
            for (key, value) in part {
                match (key.as_str(), merged.get_mut(key)) {
                    ("properties", Some(Value::Object(mine))) => {
                        if let Value::Object(theirs) = value {
                            mine.extend(theirs.clone());
                        }
                    }
                    ("required", Some(Value::Array(mine))) => {
                        if let Value::Array(theirs) = value {
                            mine.extend(theirs.iter().cloned());
                        }
                    }
                    ("minimum" | "exclusiveMinimum" | "minLength" | "minItems", Some(mine)) => {
                        if value.as_f64() > mine.as_f64() {
                            *mine = value.clone();
                        }
                    }
                    ("maximum" | "exclusiveMaximum" | "maxLength" | "maxItems", Some(mine)) => {
                        if value.as_f64() < mine.as_f64() {
                            *mine = value.clone();
                        }
                    }
                    (_, Some(_)) if key == "description" || key == "title" => {}
                    (_, _) => {
                        merged.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        Ok(Value::Object(merged))
    }

    fn typed_strategy(
        &self,
        kind: &str,
        schema: &Map<String, Value>,
        context: &Context,
        depth: usize,
    ) -> Result<BoxedStrategy<Value>, DocError> {
        Ok(match kind {
            "null" => Just(Value::Null).boxed(),
            "boolean" => any::<bool>().prop_map(Value::Bool).boxed(),
            "integer" => {
                let (min, max) = integer_bounds(schema, &context.at)?;
                let step = match schema.get("multipleOf") {
                    None => 1,
                    Some(step) => step.as_i64().filter(|step| *step > 0).ok_or_else(|| {
                        DocError::Unsupported(format!("{}: multipleOf {step}", context.at))
                    })?,
                };
                let (low, high) = (div_ceil(min, step), min_div_floor(max, step));
                if low > high {
                    return Err(DocError::Unsatisfiable(context.at.clone()));
                }
                leaning_integer(low, high)
                    .prop_map(move |n| Value::from(n * step))
                    .boxed()
            }
            "number" => {
                let min = schema
                    .get("minimum")
                    .or_else(|| schema.get("exclusiveMinimum"))
                    .and_then(Value::as_f64)
                    .unwrap_or(-1e9);
                let max = schema
                    .get("maximum")
                    .or_else(|| schema.get("exclusiveMaximum"))
                    .and_then(Value::as_f64)
                    .unwrap_or(1e9);
                if min > max {
                    return Err(DocError::Unsatisfiable(context.at.clone()));
                }
                let (exclusive_min, exclusive_max) = (
                    schema.get("exclusiveMinimum").and_then(Value::as_f64),
                    schema.get("exclusiveMaximum").and_then(Value::as_f64),
                );
                (min..=max)
                    .prop_filter("exclusive bounds", move |n| {
                        exclusive_min.is_none_or(|m| *n > m) && exclusive_max.is_none_or(|m| *n < m)
                    })
                    .prop_map(Value::from)
                    .boxed()
            }
            "string" => self
                .string_strategy(schema, context)?
                .prop_map(Value::String)
                .boxed(),
            "array" => {
                let items = match schema.get("items") {
                    Some(items) => self.schema_strategy_in(items, context, depth + 1)?,
                    None => any_json().boxed(),
                };
                let min = count(schema, "minItems")?.unwrap_or(0);
                let max = count(schema, "maxItems")?.unwrap_or(min + UNBOUNDED_EXTRA);
                if min > max {
                    return Err(DocError::Unsatisfiable(format!("{}: items", context.at)));
                }
                let lists = leaning_count(min, max)
                    .prop_flat_map(move |n| vec(items.clone(), n as usize))
                    .boxed();
                if schema.get("uniqueItems") == Some(&Value::Bool(true)) {
                    let min = usize::try_from(min).unwrap_or(usize::MAX);
                    lists
                        .prop_map(dedupe)
                        .prop_filter("uniqueItems below minItems", move |list| list.len() >= min)
                        .prop_map(Value::Array)
                        .boxed()
                } else {
                    lists.prop_map(Value::Array).boxed()
                }
            }
            "object" => self.object_strategy(schema, context, depth)?,
            other => {
                return Err(DocError::Unsupported(format!(
                    "{}: type {other}",
                    context.at
                )));
            }
        })
    }

    fn object_strategy(
        &self,
        schema: &Map<String, Value>,
        context: &Context,
        depth: usize,
    ) -> Result<BoxedStrategy<Value>, DocError> {
        let required: BTreeSet<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let empty = Map::new();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let mut fields = Vec::new();
        for (name, property) in properties {
            let inner = Context {
                ascii: context.ascii,
                at: format!("{}.{name}", context.at),
            };
            let value = self.schema_strategy_in(property, &inner, depth + 1)?;
            let value = if required.contains(name.as_str()) {
                value.prop_map(Some).boxed()
            } else {
                proptest::option::of(value).boxed()
            };
            let name = name.clone();
            fields.push(value.prop_map(move |v| (name.clone(), v)).boxed());
        }
        for name in &required {
            if !properties.contains_key(*name) {
                let name = (*name).to_owned();
                fields.push(
                    any_json()
                        .prop_map(move |v| (name.clone(), Some(v)))
                        .boxed(),
                );
            }
        }
        // Extra members where the schema allows them (absent means allowed).
        let extra = match schema.get("additionalProperties") {
            Some(Value::Bool(false)) => None,
            None | Some(Value::Bool(true)) => Some(any_json().boxed()),
            Some(extra) => Some(self.schema_strategy_in(extra, context, depth + 1)?),
        };
        let known: HashSet<String> = properties.keys().cloned().collect();
        let extras = match extra {
            None => Just(Vec::new()).boxed(),
            Some(values) => vec(
                (
                    "[a-z][a-z0-9_]{0,11}"
                        .prop_filter("a declared property", move |name| !known.contains(name)),
                    values,
                ),
                0..=2,
            )
            .boxed(),
        };
        Ok((fields, extras)
            .prop_map(|(fields, extras)| {
                let mut object = Map::new();
                for (name, value) in extras {
                    object.insert(name, value);
                }
                for (name, value) in fields {
                    if let Some(value) = value {
                        object.insert(name, value);
                    }
                }
                Value::Object(object)
            })
            .boxed())
    }

    fn string_strategy(
        &self,
        schema: &Map<String, Value>,
        context: &Context,
    ) -> Result<BoxedStrategy<String>, DocError> {
        let min = count(schema, "minLength")?.unwrap_or(0);
        let max = count(schema, "maxLength")?;
        if max.is_some_and(|max| max < min) {
            return Err(DocError::Unsatisfiable(format!("{}: length", context.at)));
        }
        let fits = move |s: &String| {
            let len = s.chars().count() as u64;
            len >= min && max.is_none_or(|max| len <= max)
        };
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            // JSON Schema patterns search; anchors are the document's way to
            // constrain the whole value, and proptest generates whole values.
            let bare = pattern.strip_prefix('^').unwrap_or(pattern);
            let bare = bare.strip_suffix('$').unwrap_or(bare);
            let strings = proptest::string::string_regex(bare).map_err(|err| {
                DocError::Unsupported(format!("{}: pattern {pattern}: {err}", context.at))
            })?;
            return Ok(strings.prop_filter("minLength/maxLength", fits).boxed());
        }
        match schema.get("format").and_then(Value::as_str) {
            Some("uuid") => {
                return Ok(any::<u128>()
                    .prop_map(|n| {
                        uuid::Builder::from_random_bytes(n.to_be_bytes())
                            .into_uuid()
                            .to_string()
                    })
                    .prop_filter("minLength/maxLength", fits)
                    .boxed());
            }
            Some("date-time") => {
                return Ok((
                    1970u32..2100,
                    1u32..=12,
                    1u32..=28,
                    0u32..24,
                    0u32..60,
                    0u32..60,
                )
                    .prop_map(|(y, mo, d, h, mi, s)| {
                        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
                    })
                    .boxed());
            }
            _ => {}
        }
        let max = max.unwrap_or(min + UNBOUNDED_EXTRA * 4);
        let chars = if context.ascii {
            proptest::char::range('!', '~').boxed()
        } else {
            any::<char>().boxed()
        };
        Ok(leaning_count(min, max)
            .prop_flat_map(move |n| vec(chars.clone(), n as usize))
            .prop_map(String::from_iter)
            .boxed())
    }

    /// Whether an answer is one the document describes for `op`: its status
    /// is listed; its content type is one listed for that status (when it has
    /// a body); and a JSON body fits the listed schema. The reasons when not.
    pub fn check_answer(
        &self,
        op: &Operation,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), Vec<String>> {
        if !op.documents(status) {
            return Err(vec![format!("{status} is not documented for {}", op.id())]);
        }
        let response = self
            .response(op, status)
            .map_err(|err| vec![err.to_string()])?;
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return Ok(());
        };
        if content.is_empty() || body.is_empty() {
            return Ok(());
        }
        let media = content_type
            .map(|value| {
                value
                    .split(';')
                    .next()
                    .unwrap_or(value)
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let Some(listed) = content.get(&media) else {
            return Err(vec![format!(
                "{status}: content type {media:?} is not among {:?}",
                content.keys().collect::<Vec<_>>()
            )]);
        };
        let (Some(schema), true) = (listed.get("schema"), is_json(&media)) else {
            return Ok(());
        };
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| vec![format!("{status}: the {media} body is not JSON: {err}")])?;
        let errors = self.validate(schema, &value);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors
                .into_iter()
                .map(|error| format!("{status} body: {error}"))
                .collect())
        }
    }

    /// The response object the document gives for `status` (exact, then its
    /// class, then `default`).
    pub fn response(&self, op: &Operation, status: u16) -> Result<&Value, DocError> {
        let responses = &self.operation_object(op)?["responses"];
        let found = responses
            .get(status.to_string())
            .or_else(|| responses.get(format!("{}XX", status / 100)))
            .or_else(|| responses.get("default"))
            .ok_or_else(|| DocError::Malformed(format!("{}: no answer for {status}", op.id())))?;
        self.resolve(found)
    }

    /// What in `value` breaks `schema`; empty when it fits.
    pub fn validate(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.validate_at(schema, value, "$", 0, &mut errors);
        errors
    }

    fn validate_at(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        depth: usize,
        errors: &mut Vec<String>,
    ) {
        if depth > MAX_DEPTH {
            errors.push(format!("{at}: schema nested too deep"));
            return;
        }
        let schema = match self.resolve(schema) {
            Ok(schema) => schema,
            Err(err) => {
                errors.push(format!("{at}: {err}"));
                return;
            }
        };
        let Some(object) = schema.as_object() else {
            if schema == &Value::Bool(false) {
                errors.push(format!("{at}: no value is allowed"));
            }
            return;
        };
        if let Some(Value::Array(parts)) = object.get("allOf") {
            for part in parts {
                self.validate_at(part, value, at, depth + 1, errors);
            }
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(Value::Array(parts)) = object.get(keyword) {
                let fitting = parts
                    .iter()
                    .filter(|part| {
                        let mut inner = Vec::new();
                        self.validate_at(part, value, at, depth + 1, &mut inner);
                        inner.is_empty()
                    })
                    .count();
                if fitting == 0 || (keyword == "oneOf" && fitting > 1) {
                    errors.push(format!(
                        "{at}: {fitting} of the {keyword} schemas fit {value}"
                    ));
                }
            }
        }
        if let Some(expected) = object.get("const")
            && expected != value
        {
            errors.push(format!("{at}: {value} is not {expected}"));
        }
        if let Some(Value::Array(values)) = object.get("enum")
            && !values.contains(value)
        {
            errors.push(format!("{at}: {value} is not one of {values:?}"));
        }
        let mut types = schema_types(object);
        if object.get("nullable") == Some(&Value::Bool(true)) {
            types.push("null");
        }
        let declares_type = object.contains_key("type");
        if declares_type && !types.iter().any(|kind| is_of_type(value, kind)) {
            errors.push(format!("{at}: {value} is not of type {types:?}"));
            return;
        }
        match value {
            Value::Number(number) => validate_number(object, number, at, errors),
            Value::String(text) => {
                let len = text.chars().count() as u64;
                if count(object, "minLength")
                    .ok()
                    .flatten()
                    .is_some_and(|min| len < min)
                {
                    errors.push(format!("{at}: {text:?} is shorter than minLength"));
                }
                if count(object, "maxLength")
                    .ok()
                    .flatten()
                    .is_some_and(|max| len > max)
                {
                    errors.push(format!("{at}: {text:?} is longer than maxLength"));
                }
                if object.get("format").and_then(Value::as_str) == Some("uuid")
                    && uuid::Uuid::parse_str(text).is_err()
                {
                    errors.push(format!("{at}: {text:?} is not a uuid"));
                }
            }
            Value::Array(items) => {
                let len = items.len() as u64;
                if count(object, "minItems")
                    .ok()
                    .flatten()
                    .is_some_and(|min| len < min)
                {
                    errors.push(format!("{at}: {len} items, under minItems"));
                }
                if count(object, "maxItems")
                    .ok()
                    .flatten()
                    .is_some_and(|max| len > max)
                {
                    errors.push(format!("{at}: {len} items, over maxItems"));
                }
                if object.get("uniqueItems") == Some(&Value::Bool(true))
                    && dedupe(items.clone()).len() != items.len()
                {
                    errors.push(format!("{at}: items are not unique"));
                }
                if let Some(schema) = object.get("items") {
                    for (index, item) in items.iter().enumerate() {
                        self.validate_at(
                            schema,
                            item,
                            &format!("{at}[{index}]"),
                            depth + 1,
                            errors,
                        );
                    }
                }
            }
            Value::Object(members) => {
                if let Some(Value::Array(required)) = object.get("required") {
                    for name in required.iter().filter_map(Value::as_str) {
                        if !members.contains_key(name) {
                            errors.push(format!("{at}: the required {name} is missing"));
                        }
                    }
                }
                let empty = Map::new();
                let properties = object
                    .get("properties")
                    .and_then(Value::as_object)
                    .unwrap_or(&empty);
                for (name, member) in members {
                    let at = format!("{at}.{name}");
                    match (properties.get(name), object.get("additionalProperties")) {
                        (Some(schema), _) => {
                            self.validate_at(schema, member, &at, depth + 1, errors);
                        }
                        (None, Some(Value::Bool(false))) => {
                            errors.push(format!("{at}: not a declared property"));
                        }
                        (None, Some(extra)) => {
                            self.validate_at(extra, member, &at, depth + 1, errors);
                        }
                        (None, None) => {}
                    }
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
}

/// Draws `cases` values of `strategy` from a runner seeded with `seed`: the
/// same seed, the same values.
pub fn sample<T: std::fmt::Debug>(
    strategy: &BoxedStrategy<T>,
    cases: usize,
    seed: u64,
) -> Result<Vec<T>, DocError> {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: u32::try_from(cases).unwrap_or(u32::MAX),
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    (0..cases)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .map(|tree| tree.current())
                .map_err(|reason| DocError::Generation(reason.to_string()))
        })
        .collect()
}

/// A parameter of an operation.
#[derive(Debug, Clone)]
struct Param {
    name: String,
    place: ParamIn,
    required: bool,
    schema: Value,
}

/// Where in the document a schema is, and whether its strings must be ASCII
/// (headers and path segments).
#[derive(Debug, Clone)]
struct Context {
    ascii: bool,
    at: String,
}

fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json")
}

/// The types a schema allows: its `type` (one or a list), else what its
/// keywords imply, else every type.
fn schema_types(object: &Map<String, Value>) -> Vec<&'static str> {
    const ALL: [&str; 7] = [
        "null", "boolean", "integer", "number", "string", "array", "object",
    ];
    let named = |name: &str| ALL.iter().copied().find(|kind| *kind == name);
    match object.get("type") {
        Some(Value::String(kind)) => named(kind).into_iter().collect(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .filter_map(named)
            .collect(),
        _ if object.contains_key("properties") || object.contains_key("required") => vec!["object"],
        _ if object.contains_key("items") => vec!["array"],
        _ => vec!["null", "boolean", "integer", "string"],
    }
}

fn is_of_type(value: &Value, kind: &str) -> bool {
    match (kind, value) {
        ("null", Value::Null)
        | ("boolean", Value::Bool(_))
        | ("number", Value::Number(_))
        | ("string", Value::String(_))
        | ("array", Value::Array(_))
        | ("object", Value::Object(_)) => true,
        // Strict: `2.0` is not an integer (see the module's documentation).
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

fn validate_number(
    object: &Map<String, Value>,
    number: &serde_json::Number,
    at: &str,
    errors: &mut Vec<String>,
) {
    let as_i128 = number
        .as_i64()
        .map(i128::from)
        .or_else(|| number.as_u64().map(i128::from));
    let bound = |key: &str| object.get(key).and_then(Value::as_f64);
    let value = number.as_f64().unwrap_or(f64::NAN);
    // Integers compare exactly against integer bounds (i64::MAX is not an f64).
    let below = |key: &str| match (as_i128, object.get(key)) {
        (Some(n), Some(b)) if b.is_i64() || b.is_u64() => {
            let b = b
                .as_i64()
                .map(i128::from)
                .or_else(|| b.as_u64().map(i128::from));
            b.is_some_and(|b| n < b)
        }
        _ => bound(key).is_some_and(|b| value < b),
    };
    let above = |key: &str| match (as_i128, object.get(key)) {
        (Some(n), Some(b)) if b.is_i64() || b.is_u64() => {
            let b = b
                .as_i64()
                .map(i128::from)
                .or_else(|| b.as_u64().map(i128::from));
            b.is_some_and(|b| n > b)
        }
        _ => bound(key).is_some_and(|b| value > b),
    };
    if below("minimum") {
        errors.push(format!("{at}: {number} is under the minimum"));
    }
    if above("maximum") {
        errors.push(format!("{at}: {number} is over the maximum"));
    }
    if bound("exclusiveMinimum").is_some_and(|b| value <= b) {
        errors.push(format!("{at}: {number} is not over the exclusiveMinimum"));
    }
    if bound("exclusiveMaximum").is_some_and(|b| value >= b) {
        errors.push(format!("{at}: {number} is not under the exclusiveMaximum"));
    }
    let range = match object.get("format").and_then(Value::as_str) {
        Some("int32") => Some((i128::from(i32::MIN), i128::from(i32::MAX))),
        Some("int64") => Some((i128::from(i64::MIN), i128::from(i64::MAX))),
        _ => None,
    };
    if let Some((low, high)) = range
        && !as_i128.is_some_and(|n| (low..=high).contains(&n))
    {
        errors.push(format!("{at}: {number} does not fit its format"));
    }
}

/// An integer schema's inclusive bounds: its (exclusive) minimum and
/// maximum, else its format's, else a 64-bit integer's.
fn integer_bounds(schema: &Map<String, Value>, at: &str) -> Result<(i64, i64), DocError> {
    let (format_min, format_max) = match schema.get("format").and_then(Value::as_str) {
        Some("int32") => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => (i64::MIN, i64::MAX),
    };
    let read = |key: &str| -> Result<Option<i64>, DocError> {
        match schema.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_u64().map(|_| i64::MAX))
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| DocError::Malformed(format!("{at}: {key} {n}"))),
            Some(other) => Err(DocError::Malformed(format!("{at}: {key} {other}"))),
        }
    };
    let mut min = read("minimum")?.unwrap_or(format_min).max(format_min);
    let mut max = read("maximum")?.unwrap_or(format_max).min(format_max);
    if let Some(exclusive) = read("exclusiveMinimum")? {
        min = min.max(exclusive.saturating_add(1));
    }
    if let Some(exclusive) = read("exclusiveMaximum")? {
        max = max.min(exclusive.saturating_sub(1));
    }
    if min > max {
        return Err(DocError::Unsatisfiable(format!("{at}: {min} > {max}")));
    }
    Ok((min, max))
}

fn div_ceil(n: i64, step: i64) -> i64 {
    let q = n.div_euclid(step);
    if n.rem_euclid(step) == 0 { q } else { q + 1 }
}

fn min_div_floor(n: i64, step: i64) -> i64 {
    n.div_euclid(step)
}

/// Integers in `min..=max`, leaning to the bounds and to the values just
/// above the minimum (small ids, one item, one unit), as fuzzers do.
fn leaning_integer(min: i64, max: i64) -> BoxedStrategy<i64> {
    let near_min = min..=min.saturating_add(15).min(max);
    let near_max = max.saturating_sub(15).max(min)..=max;
    Union::new_weighted(vec![
        (2, Just(min).boxed()),
        (1, Just(max).boxed()),
        (4, near_min.boxed()),
        (1, near_max.boxed()),
        (4, (min..=max).boxed()),
    ])
    .boxed()
}

/// A count (a length) in `min..=max`, leaning to the bounds.
fn leaning_count(min: u64, max: u64) -> BoxedStrategy<u64> {
    let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    leaning_integer(to_i64(min), to_i64(max))
        .prop_map(|n| u64::try_from(n).unwrap_or(0))
        .boxed()
}

/// A non-negative integer keyword (`minItems`, `maxLength`, ...).
fn count(schema: &Map<String, Value>, key: &str) -> Result<Option<u64>, DocError> {
    match schema.get(key) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| DocError::Malformed(format!("{key} {value}"))),
    }
}

/// The list without its repeated values, in order.
fn dedupe(items: Vec<Value>) -> Vec<Value> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.to_string()))
        .collect()
}

/// Small JSON values of any type, where a schema says nothing.
fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9 ]{0,12}".prop_map(Value::String),
    ]
}

/// A parameter's value as it goes into a path, query or header (style
/// `simple`/`form`: lists comma-joined).
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Percent-encodes everything but the unreserved characters (RFC 3986).
pub fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// How many requests of each operation answered each status.
#[derive(Debug, Clone, Default)]
pub struct Histogram(pub BTreeMap<String, BTreeMap<u16, usize>>);

impl Histogram {
    pub fn record(&mut self, operation: &str, status: u16) {
        *self
            .0
            .entry(operation.to_owned())
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    /// Every answer, by status.
    pub fn totals(&self) -> BTreeMap<u16, usize> {
        let mut totals = BTreeMap::new();
        for statuses in self.0.values() {
            for (status, n) in statuses {
                *totals.entry(*status).or_default() += n;
            }
        }
        totals
    }
}

impl std::fmt::Display for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (operation, statuses) in &self.0 {
            let line: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
            writeln!(f, "{operation:<24} {}", line.join(" "))?;
        }
        let totals: Vec<String> = self
            .totals()
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect();
        write!(f, "{:<24} {}", "all", totals.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use faultline_shop::domain::{
        CheckoutBody, IdempotencyKey, MAX_ITEMS, MAX_QUANTITY, ProductId, Quantity,
    };
    use serde_json::json;

    use super::*;

    fn shop() -> ApiDocument {
        let doc =
            serde_json::to_value(faultline_shop::roles::gateway::openapi::document()).unwrap();
        ApiDocument::new(doc).unwrap()
    }

    fn requests_of(
        api: &ApiDocument,
        method: &str,
        path: &str,
        cases: usize,
    ) -> Vec<GeneratedRequest> {
        let index = api
            .operations()
            .iter()
            .position(|op| op.method == method && op.path == path)
            .unwrap();
        sample(&api.requests_for(index).unwrap(), cases, 7).unwrap()
    }

    #[test]
    fn reads_every_operation_and_its_statuses() {
        let api = shop();
        let statuses = |method, path| -> Vec<u16> {
            api.operation(method, path)
                .unwrap()
                .statuses
                .iter()
                .copied()
                .collect()
        };
        assert_eq!(statuses("GET", "/api/products"), [200, 400, 401, 429, 503]);
        assert_eq!(
            statuses("GET", "/api/products/{id}"),
            [200, 400, 401, 404, 429, 503]
        );
        assert_eq!(
            statuses("POST", "/api/orders"),
            [201, 202, 400, 401, 402, 409, 413, 422, 429, 503]
        );
        assert_eq!(
            statuses("GET", "/api/orders/{id}"),
            [200, 400, 401, 404, 429, 503]
        );
        let checkout = api.operation("post", "/api/orders").unwrap();
        assert!(checkout.documents(422) && !checkout.documents(500) && !checkout.documents(415));
        assert!(checkout.requires_auth);
        let list = api.operation("GET", "/api/products").unwrap();
        assert!(list.accepts_auth && !list.requires_auth);
    }

    #[test]
    fn every_checkout_body_is_one_the_server_can_parse() {
        let api = shop();
        let requests = requests_of(&api, "POST", "/api/orders", 400);
        let (mut one, mut most, mut unit, mut most_units) = (false, false, false, false);
        for request in &requests {
            let body = request.body.clone().expect("the body is required");
            // The server's own type takes it: the right fields and types.
            let parsed: CheckoutBody = serde_json::from_value(body.clone()).unwrap();
            let lines = parsed.items.len();
            assert!((1..=MAX_ITEMS).contains(&lines), "{body}");
            one |= lines == 1;
            most |= lines == MAX_ITEMS;
            for line in &parsed.items {
                ProductId::parse(line.product_id).unwrap();
                let quantity = Quantity::parse(line.quantity).unwrap();
                unit |= quantity.get() == 1;
                most_units |= i64::from(quantity.get()) == MAX_QUANTITY;
            }
            let key = request
                .headers
                .iter()
                .find(|(name, _)| name == "Idempotency-Key")
                .map(|(_, value)| value)
                .expect("the key is required");
            IdempotencyKey::parse(key).unwrap();
            assert!(request.bearer);
            assert_eq!(request.path, "/api/orders");
        }
        assert!(one && most && unit && most_units, "the bounds are reached");
    }

    #[test]
    fn path_ids_fit_their_types() {
        let api = shop();
        for request in requests_of(&api, "GET", "/api/products/{id}", 200) {
            let id: i64 = request
                .path
                .strip_prefix("/api/products/")
                .unwrap()
                .parse()
                .unwrap();
            ProductId::parse(id).unwrap();
            assert!(request.body.is_none());
        }
        for request in requests_of(&api, "GET", "/api/orders/{id}", 50) {
            let id = request.path.strip_prefix("/api/orders/").unwrap();
            uuid::Uuid::parse_str(id).unwrap();
            assert!(request.bearer);
        }
        let listed = requests_of(&api, "GET", "/api/products", 50);
        assert!(listed.iter().any(|r| r.bearer) && listed.iter().any(|r| !r.bearer));
    }

    #[test]
    fn every_generated_body_validates_against_its_own_schema() {
        let api = shop();
        let schema = json!({ "$ref": "#/components/schemas/CheckoutBody" });
        for request in requests_of(&api, "POST", "/api/orders", 200) {
            let body = request.body.unwrap();
            assert_eq!(api.validate(&schema, &body), Vec::<String>::new(), "{body}");
        }
    }

    #[test]
    fn the_validator_refuses_what_the_server_refuses() {
        let api = shop();
        let schema = json!({ "$ref": "#/components/schemas/CheckoutBody" });
        for bad in [
            json!({ "items": [] }),
            json!({ "items": [{ "product_id": 1, "quantity": 873_542.0 }] }),
            json!({ "items": [{ "product_id": 1, "quantity": 2.0 }] }),
            json!({ "items": [{ "product_id": 1, "quantity": 0 }] }),
            json!({ "items": [{ "product_id": 1, "quantity": -3 }] }),
            json!({ "items": [{ "product_id": 1, "quantity": 101 }] }),
            json!({ "items": [{ "product_id": 0, "quantity": 1 }] }),
            json!({ "items": [{ "product_id": 1u64 << 63, "quantity": 1 }] }),
            json!({ "items": [{ "product_id": 1, "quantity": 1 }, { "product_id": 1, "quantity": 1 }] }),
            json!({ "items": [{ "product_id": 1 }] }),
            json!({ "items": [{ "product_id": 1, "quantity": 1, "coupon": "x" }] }),
            json!({ "items": (1..=21).map(|id| json!({ "product_id": id, "quantity": 1 })).collect::<Vec<_>>() }),
        ] {
            assert!(!api.validate(&schema, &bad).is_empty(), "{bad} passed");
        }
        let good = json!({ "items": [{ "product_id": i64::MAX, "quantity": 100 }] });
        assert_eq!(api.validate(&schema, &good), Vec::<String>::new());
    }

    #[test]
    fn answers_are_checked_against_their_status() {
        let api = shop();
        let op = api.operation("GET", "/api/products/{id}").unwrap();
        let problem =
            br#"{"type":"about:blank","title":"Not Found","status":404,"detail":"no product 9"}"#;
        api.check_answer(op, 404, Some("application/problem+json"), problem)
            .unwrap();
        assert!(
            api.check_answer(op, 404, Some("application/json"), problem)
                .is_err()
        );
        assert!(
            api.check_answer(op, 500, Some("application/problem+json"), problem)
                .is_err()
        );
        assert!(
            api.check_answer(
                op,
                404,
                Some("application/problem+json"),
                br#"{"title":"x"}"#
            )
            .is_err()
        );
        let product = br#"{"id":1,"sku":"SKU-001","name":"Mug","price_cents":879,"stock":3}"#;
        api.check_answer(op, 200, Some("application/json"), product)
            .unwrap();
    }

    /// A document using the keywords the shop's does not.
    fn toy() -> ApiDocument {
        ApiDocument::new(json!({
            "openapi": "3.1.0",
            "paths": {
                "/things/{name}": {
                    "parameters": [
                        { "name": "name", "in": "path", "required": true,
                          "schema": { "type": "string", "minLength": 2, "maxLength": 5 } }
                    ],
                    "put": {
                        "parameters": [
                            { "$ref": "#/components/parameters/Limit" },
                            { "name": "X-Trace", "in": "header",
                              "schema": { "type": "string", "pattern": "^t-[0-9]{3}$" } }
                        ],
                        "requestBody": {
                            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Thing" } } }
                        },
                        "responses": { "2XX": { "description": "ok" }, "default": { "description": "error" } }
                    }
                }
            },
            "components": {
                "parameters": {
                    "Limit": { "name": "limit", "in": "query", "required": true,
                               "schema": { "type": "integer", "exclusiveMinimum": 0, "maximum": 50, "multipleOf": 5 } }
                },
                "schemas": {
                    "Thing": {
                        "allOf": [
                            { "$ref": "#/components/schemas/Base" },
                            { "type": "object", "required": ["kind"],
                              "properties": {
                                  "kind": { "enum": ["a", "b"] },
                                  "score": { "type": "number", "minimum": 0.5, "exclusiveMaximum": 2 },
                                  "note": { "type": ["string", "null"], "maxLength": 3 },
                                  "tags": { "type": "array", "items": { "type": "string", "format": "uuid" },
                                            "maxItems": 3, "uniqueItems": true },
                                  "choice": { "oneOf": [ { "type": "boolean" }, { "const": 7 } ] }
                              } }
                        ]
                    },
                    "Base": { "type": "object", "required": ["id"],
                              "properties": { "id": { "type": "integer", "format": "int32", "minimum": -3 } } }
                }
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_generator_honours_the_other_keywords() {
        let api = toy();
        let op = &api.operations()[0];
        assert_eq!(op.id(), "PUT /things/{name}");
        assert!(op.documents(204) && op.documents(418) && !op.requires_auth);
        let thing = json!({ "$ref": "#/components/schemas/Thing" });
        let (mut traced, mut bodies, mut encoded) = (0, 0, 0);
        for request in sample(&api.requests().unwrap(), 300, 11).unwrap() {
            let (path, query) = request.path.split_once('?').unwrap();
            let name = path.strip_prefix("/things/").unwrap();
            assert!(!name.contains('/'), "{path}");
            encoded += usize::from(name.contains('%'));
            traced += request.headers.len();
            bodies += usize::from(request.body.is_some());
            let limit: i64 = query.strip_prefix("limit=").unwrap().parse().unwrap();
            assert!(limit > 0 && limit <= 50 && limit % 5 == 0, "{limit}");
            for (name, value) in &request.headers {
                assert_eq!(name, "X-Trace");
                assert!(value.len() == 5 && value.starts_with("t-"), "{value}");
            }
            if let Some(body) = &request.body {
                assert_eq!(api.validate(&thing, body), Vec::<String>::new(), "{body}");
                assert!(body["id"].as_i64().unwrap() >= -3);
            }
        }
        // Optional parts are sometimes sent, sometimes not.
        assert!(traced > 0 && traced < 300, "{traced} X-Trace headers");
        assert!(bodies > 0 && bodies < 300, "{bodies} bodies");
        assert!(encoded > 0, "no path parameter needed encoding");
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("a b/é~"), "a%20b%2F%C3%A9~");
    }
}
