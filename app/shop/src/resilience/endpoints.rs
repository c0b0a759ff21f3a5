//! An upstream's endpoints (replicas): found by DNS, with passive outlier
//! ejection.
//!
//! An upstream is configured as one or more base URLs. A URL whose host is a
//! name stands for every address the name resolves to: compose's service
//! name (with `--scale` or `deploy.replicas`), Swarm's `tasks.<service>`, a
//! Kubernetes headless Service. [`Endpoints::rediscover`] resolves the names
//! again (every few seconds, from the role's background task): an address
//! that appears becomes an endpoint, one that is gone stops being one, and
//! one that stays keeps its health. A lookup that times out keeps the last
//! endpoints: a slow resolver is no reason to forget the replicas. A name
//! that resolves to nothing (every replica stopped or not ready) is its own
//! endpoint again, as it is until it has resolved once: the HTTP client
//! resolves it per connection, so calls fail at once while it does not,
//! rather than wait on connections to addresses nobody has any more. It comes
//! back ejected, so that calls and retries go to the other endpoints while
//! there are any.
//!
//! Calls go round-robin over the healthy endpoints. A connection failure
//! ejects an endpoint at once (a dead replica is out of rotation after its
//! first refused connection, well inside a second); `eject_after` consecutive
//! 5xx answers or timeouts eject it too. An ejected endpoint comes back after
//! its ejection time, which doubles with each repeated ejection up to
//! `max_ejection`; one success resets it. When every endpoint is ejected, the
//! one whose ejection ends first is tried anyway (panic mode): better a likely
//! failure than none at all.
//!
//! `replicas_desired` is configured (`FAULTLINE_<UPSTREAM>_REPLICAS`), or the
//! number of URLs when it is not: a name's resolving to fewer addresses than
//! desired shows as fewer healthy endpoints, which ReplicasBelowDesired
//! watches.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use url::Url;

/// Ejection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectionConfig {
    /// Consecutive 5xx answers or timeouts that eject an endpoint.
    pub eject_after: u32,
    /// The first ejection's length.
    pub base_ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
}

impl Default for EjectionConfig {
    fn default() -> Self {
        Self {
            eject_after: 3,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(10),
        }
    }
}

/// How a call to an endpoint went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Could not connect: the endpoint is likely gone.
    ConnectFailed,
    /// A 5xx answer or a timeout.
    Failed,
}

/// How names become addresses.
#[derive(Debug, Clone, Default)]
pub enum Resolver {
    /// The system's resolver (`getaddrinfo`: `/etc/hosts`, then the DNS
    /// servers and search domains of `/etc/resolv.conf`), asked afresh each
    /// time: it keeps no cache of its own, so a replica that is gone is gone
    /// at the next lookup.
    #[default]
    System,
    /// A fixed table, changed at will: for tests.
    Table(Arc<Mutex<HashMap<String, Vec<IpAddr>>>>),
}

impl Resolver {
    /// Every address of `host`, in the order the resolver gave them,
    /// without repeats.
    pub async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
        let mut addresses: Vec<IpAddr> = match self {
            Resolver::System => tokio::net::lookup_host((host, port))
                .await?
                .map(|addr: SocketAddr| addr.ip())
                .collect(),
            Resolver::Table(table) => table
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(host)
                .cloned()
                .unwrap_or_default(),
        };
        let mut seen = std::collections::HashSet::new();
        addresses.retain(|ip| seen.insert(*ip));
        Ok(addresses)
    }
}

/// Where an upstream's replicas are: its configured URLs, how many replicas
/// it should have, and how names are resolved.
#[derive(Debug, Clone, Default)]
pub struct Replicas {
    pub urls: Vec<Url>,
    /// Replicas desired; `None`: one per URL.
    pub desired: Option<usize>,
    pub resolver: Resolver,
}

impl From<Vec<Url>> for Replicas {
    fn from(urls: Vec<Url>) -> Self {
        Self {
            urls,
            ..Self::default()
        }
    }
}

/// One endpoint: the URL a call goes to, and the configured URL it came from.
#[derive(Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The base URL calls go to (an address once its name has resolved).
    pub url: Url,
    /// The configured URL's host and port: the `server.address` and
    /// `server.port` of its calls, whatever address they go to.
    pub host: String,
    pub port: u16,
    /// The configured URL's index.
    source: usize,
}

#[derive(Debug, Clone)]
struct Health {
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

impl Health {
    const NEW: Self = Self {
        consecutive_failures: 0,
        ejections: 0,
        ejected_until: None,
    };

    fn ejected_at(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| until > now)
    }

    /// Ejects the endpoint from `now`, for longer with each ejection in a
    /// row; the length when this starts a new ejection (not when it extends
    /// one already running).
    fn eject(&mut self, now: Instant, config: &EjectionConfig) -> Option<Duration> {
        let factor = 2_u32.saturating_pow(self.ejections.min(8));
        let length = config
            .base_ejection
            .saturating_mul(factor)
            .min(config.max_ejection);
        let new = !self.ejected_at(now);
        if new {
            self.ejections += 1;
        }
        self.ejected_until = Some(now + length);
        self.consecutive_failures = 0;
        new.then_some(length)
    }
}

#[derive(Debug)]
struct Entry {
    endpoint: Arc<Endpoint>,
    health: Health,
}

/// The endpoints of one upstream.
#[derive(Debug)]
pub struct Endpoints {
    upstream: &'static str,
    /// The configured base URLs.
    sources: Vec<Url>,
    entries: Mutex<Vec<Entry>>,
    next: AtomicUsize,
    config: EjectionConfig,
    resolver: Resolver,
    /// Woken when a connection to an endpoint of a name fails: the name is
    /// looked up again at once (a replica restarted with a new address is
    /// found without waiting for the next refresh).
    stale: tokio::sync::Notify,
}

/// A host that is an address needs no lookup.
fn is_address(url: &Url) -> bool {
    matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)))
}

/// A new endpoint calling `url`, for configured URL `source`.
fn endpoint(url: Url, source: &Url, index: usize) -> Arc<Endpoint> {
    Arc::new(Endpoint {
        url,
        host: source.host_str().unwrap_or_default().to_owned(),
        port: source.port_or_known_default().unwrap_or_default(),
        source: index,
    })
}

/// `url` at each of `addresses`, in a stable order (whatever order the
/// resolver rotates through).
fn at_addresses(url: &Url, mut addresses: Vec<IpAddr>) -> Vec<Url> {
    addresses.sort_unstable();
    addresses
        .into_iter()
        .filter_map(|ip| {
            let mut with_ip = url.clone();
            with_ip.set_ip_host(ip).ok().map(|()| with_ip)
        })
        .collect()
}

/// The longest wait for one name's addresses: a resolver that does not
/// answer leaves the endpoints as they were.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

impl Endpoints {
    /// The endpoints of `upstream` at `replicas`.
    pub fn new(upstream: &'static str, replicas: Replicas, config: EjectionConfig) -> Self {
        let Replicas {
            urls: sources,
            desired,
            resolver,
        } = replicas;
        let entries = sources
            .iter()
            .enumerate()
            .map(|(index, url)| Entry {
                endpoint: endpoint(url.clone(), url, index),
                health: Health::NEW,
            })
            .collect();
        let endpoints = Self {
            upstream,
            entries: Mutex::new(entries),
            next: AtomicUsize::new(0),
            stale: tokio::sync::Notify::new(),
            config,
            resolver,
            sources,
        };
        metrics::gauge!("replicas_desired", "peer_service" => upstream)
            .set(desired.unwrap_or(endpoints.sources.len()) as f64);
        endpoints.publish(&endpoints.lock(), Instant::now());
        endpoints
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // A poisoned lock holds valid counters: keep using them.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The number of endpoints now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Whether any configured URL names a host to resolve.
    pub fn has_names(&self) -> bool {
        self.sources.iter().any(|url| !is_address(url))
    }

    /// The next endpoint to call, skipping `avoid` (the one a retry failed on)
    /// when another healthy one exists.
    pub fn pick(&self, avoid: Option<&Arc<Endpoint>>) -> Option<Arc<Endpoint>> {
        let now = Instant::now();
        let entries = self.lock();
        let n = entries.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let healthy = |i: usize| !entries[i].health.ejected_at(now);
        let avoided =
            |i: usize| avoid.is_some_and(|avoid| Arc::ptr_eq(avoid, &entries[i].endpoint));
        let chosen = (0..n)
            .map(|offset| (start + offset) % n)
            .find(|&i| healthy(i) && !avoided(i))
            .or_else(|| {
                (0..n)
                    .map(|offset| (start + offset) % n)
                    .find(|&i| healthy(i))
            })
            .or_else(|| {
                // Panic mode: everything is ejected; try the one back soonest.
                (0..n).min_by_key(|&i| entries[i].health.ejected_until.unwrap_or(now))
            })?;
        Some(entries[chosen].endpoint.clone())
    }

    /// Records how a call to `endpoint` went (nothing, if it is no longer one
    /// of the endpoints).
    pub fn record(&self, endpoint: &Arc<Endpoint>, outcome: Outcome) {
        let now = Instant::now();
        let mut entries = self.lock();
        let Some(entry) = entries
            .iter_mut()
            .find(|entry| Arc::ptr_eq(&entry.endpoint, endpoint))
        else {
            return;
        };
        let health = &mut entry.health;
        let eject = match outcome {
            Outcome::Success => {
                *health = Health::NEW;
                false
            }
            Outcome::ConnectFailed => {
                if !is_address(&self.sources[endpoint.source]) {
                    self.stale.notify_one();
                }
                true
            }
            Outcome::Failed => {
                health.consecutive_failures += 1;
                health.consecutive_failures >= self.config.eject_after
            }
        };
        if eject && let Some(length) = health.eject(now, &self.config) {
            tracing::warn!(upstream = self.upstream, endpoint = %endpoint.url, ejected_for = ?length, ?outcome, "ejecting endpoint");
        }
        self.publish(&entries, now);
    }

    /// Waits until a connection to an endpoint of a name failed since the
    /// last call (at once if one did meanwhile).
    pub async fn went_stale(&self) {
        self.stale.notified().await;
    }

    /// Resolves every configured name again and updates the endpoints: new
    /// addresses join, vanished ones leave, the others keep their health. A
    /// lookup that times out keeps the endpoints; a name that resolves to
    /// nothing is its own endpoint again. Each lookup is timed in `dns_lookup_duration_seconds`.
    pub async fn rediscover(&self) {
        for (source, url) in self.sources.iter().enumerate() {
            if is_address(url) {
                continue;
            }
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                continue;
            };
            let started = Instant::now();
            let found =
                tokio::time::timeout(LOOKUP_TIMEOUT, self.resolver.resolve(host, port)).await;
            let error_type = match &found {
                Ok(Ok(addresses)) if !addresses.is_empty() => None,
                Ok(Ok(_)) => Some("no_addresses"),
                Ok(Err(_)) => Some("lookup_failed"),
                Err(_) => Some("timeout"),
            };
            let elapsed = started.elapsed().as_secs_f64();
            match error_type {
                None => metrics::histogram!("dns_lookup_duration_seconds", "peer_service" => self.upstream, "dns_question_name" => host.to_owned()).record(elapsed),
                Some(error_type) => metrics::histogram!("dns_lookup_duration_seconds", "peer_service" => self.upstream, "dns_question_name" => host.to_owned(), "error_type" => error_type).record(elapsed),
            }
            match found {
                Ok(Ok(addresses)) if !addresses.is_empty() => {
                    self.replace(source, url, at_addresses(url, addresses), |_| Health::NEW);
                }
                // An answer, and no address: every replica is gone (stopped,
                // not ready). The name itself is the endpoint again, which
                // the client resolves per connection: calls fail at once
                // while it does not resolve, instead of waiting for a
                // connection to an address nobody has any more.
                Ok(Ok(_)) => {
                    tracing::warn!(
                        upstream = self.upstream,
                        host,
                        "the name resolves to no address"
                    );
                    self.unresolved(source, url);
                }
                Ok(Err(err)) => {
                    tracing::warn!(upstream = self.upstream, host, error = %err, "the name does not resolve");
                    self.unresolved(source, url);
                }
                Err(_) => {
                    tracing::warn!(upstream = self.upstream, host, timeout = ?LOOKUP_TIMEOUT, "the name did not resolve in time: keeping its endpoints");
                }
            }
        }
    }

    /// The name of configured URL `source` resolves to nothing: the name is
    /// its endpoint again, and it starts ejected (its ejection continuing the
    /// back-off of the addresses it replaces), since a call to it can only
    /// fail until the name resolves. Were it healthy, a retry that avoids
    /// the dead address it stands in for would go to it and fail too. While
    /// it is the only endpoint, panic mode still calls it, and fails at once.
    fn unresolved(&self, source: usize, url: &Url) {
        self.replace(source, url, vec![url.clone()], |previous| {
            let mut health = Health {
                ejections: previous.iter().map(|h| h.ejections).max().unwrap_or(0),
                ..Health::NEW
            };
            health.eject(Instant::now(), &self.config);
            health
        });
    }

    /// Makes `urls` the endpoints of configured URL `source`: those already
    /// there keep their health, new ones get `fresh(the health of the
    /// source's endpoints until now)`.
    fn replace(
        &self,
        source: usize,
        url: &Url,
        urls: Vec<Url>,
        fresh: impl Fn(&[Health]) -> Health,
    ) {
        let mut entries = self.lock();
        let unchanged = entries
            .iter()
            .filter(|entry| entry.endpoint.source == source)
            .map(|entry| &entry.endpoint.url)
            .eq(urls.iter());
        if unchanged {
            return;
        }
        let mut kept: HashMap<Url, Entry> = HashMap::new();
        let mut others = Vec::with_capacity(entries.len());
        for entry in entries.drain(..) {
            if entry.endpoint.source == source {
                kept.insert(entry.endpoint.url.clone(), entry);
            } else {
                others.push(entry);
            }
        }
        let previous: Vec<Health> = kept.values().map(|entry| entry.health.clone()).collect();
        let mut added = Vec::new();
        let mine: Vec<Entry> = urls
            .into_iter()
            .map(|with_ip| {
                kept.remove(&with_ip).unwrap_or_else(|| {
                    added.push(with_ip.to_string());
                    Entry {
                        endpoint: endpoint(with_ip, url, source),
                        health: fresh(&previous),
                    }
                })
            })
            .collect();
        let removed: Vec<String> = kept.keys().map(Url::to_string).collect();
        tracing::info!(
            upstream = self.upstream,
            name = url.host_str(),
            ?added,
            ?removed,
            endpoints = mine.len(),
            "endpoints changed"
        );
        others.extend(mine);
        *entries = others;
        self.publish(&entries, Instant::now());
    }

    /// Healthy and ejected counts, as the gauges show them.
    pub fn counts(&self) -> (usize, usize) {
        let now = Instant::now();
        let entries = self.lock();
        let ejected = entries.iter().filter(|e| e.health.ejected_at(now)).count();
        (entries.len() - ejected, ejected)
    }

    fn publish(&self, entries: &[Entry], now: Instant) {
        let ejected = entries.iter().filter(|e| e.health.ejected_at(now)).count();
        metrics::gauge!("upstream_endpoints", "peer_service" => self.upstream, "state" => "healthy")
            .set((entries.len() - ejected) as f64);
        metrics::gauge!("upstream_endpoints", "peer_service" => self.upstream, "state" => "ejected")
            .set(ejected as f64);
    }

    /// Refreshes the gauges: ejections end with time, not with calls.
    pub fn refresh_metrics(&self) {
        let entries = self.lock();
        self.publish(&entries, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize) -> Endpoints {
        let urls: Vec<Url> = (0..n)
            .map(|i| format!("http://10.0.0.{i}:8080").parse().unwrap())
            .collect();
        Endpoints::new("test", Replicas::from(urls), EjectionConfig::default())
    }

    /// The last digit of the endpoint's address.
    fn index(endpoint: &Endpoint) -> usize {
        match endpoint.url.host() {
            Some(url::Host::Ipv4(ip)) => usize::from(ip.octets()[3]),
            other => panic!("not an IPv4 endpoint: {other:?}"),
        }
    }

    fn nth(e: &Endpoints, i: usize) -> Arc<Endpoint> {
        e.lock()
            .iter()
            .find(|entry| index(&entry.endpoint) == i)
            .map(|entry| entry.endpoint.clone())
            .unwrap()
    }

    #[test]
    fn round_robin_over_healthy_endpoints() {
        let e = endpoints(3);
        let picks: Vec<usize> = (0..6).map(|_| index(&e.pick(None).unwrap())).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn a_refused_connection_ejects_at_once() {
        let e = endpoints(3);
        e.record(&nth(&e, 1), Outcome::ConnectFailed);
        assert_eq!(e.counts(), (2, 1));
        for _ in 0..10 {
            assert_ne!(index(&e.pick(None).unwrap()), 1);
        }
    }

    #[test]
    fn server_errors_eject_after_the_threshold_and_success_resets() {
        let e = endpoints(2);
        let first = nth(&e, 0);
        e.record(&first, Outcome::Failed);
        e.record(&first, Outcome::Failed);
        assert_eq!(e.counts(), (2, 0));
        e.record(&first, Outcome::Success);
        e.record(&first, Outcome::Failed);
        e.record(&first, Outcome::Failed);
        assert_eq!(e.counts(), (2, 0), "the success reset the count");
        e.record(&first, Outcome::Failed);
        assert_eq!(e.counts(), (1, 1));
    }

    #[test]
    fn a_retry_avoids_the_endpoint_that_failed() {
        let e = endpoints(2);
        for _ in 0..4 {
            let first = e.pick(None).unwrap();
            let second = e.pick(Some(&first)).unwrap();
            assert_ne!(index(&first), index(&second));
        }
    }

    #[test]
    fn when_all_are_ejected_one_is_still_tried() {
        let e = endpoints(2);
        e.record(&nth(&e, 0), Outcome::ConnectFailed);
        e.record(&nth(&e, 1), Outcome::ConnectFailed);
        assert_eq!(e.counts(), (0, 2));
        assert!(e.pick(None).is_some());
    }

    fn table(entries: &[(&str, &[[u8; 4]])]) -> Resolver {
        let table = entries
            .iter()
            .map(|(name, ips)| {
                let ips = ips.iter().map(|ip| IpAddr::from(*ip)).collect();
                ((*name).to_owned(), ips)
            })
            .collect();
        Resolver::Table(Arc::new(Mutex::new(table)))
    }

    fn set(resolver: &Resolver, name: &str, ips: &[[u8; 4]]) {
        let Resolver::Table(table) = resolver else {
            unreachable!()
        };
        let ips = ips.iter().map(|ip| IpAddr::from(*ip)).collect();
        table.lock().unwrap().insert(name.to_owned(), ips);
    }

    /// The upstream `orders` at `http://orders:8080`, resolved by `resolver`.
    fn orders_named(resolver: &Resolver, desired: Option<usize>) -> Endpoints {
        let replicas = Replicas {
            urls: vec!["http://orders:8080".parse().unwrap()],
            desired,
            resolver: resolver.clone(),
        };
        Endpoints::new("orders", replicas, EjectionConfig::default())
    }

    fn urls(e: &Endpoints) -> Vec<String> {
        e.lock()
            .iter()
            .map(|entry| entry.endpoint.url.to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_name_stands_for_every_address_it_resolves_to() {
        let resolver = table(&[("orders", &[[10, 0, 0, 3], [10, 0, 0, 1], [10, 0, 0, 2]])]);
        let e = orders_named(&resolver, Some(3));
        assert_eq!(
            urls(&e),
            ["http://orders:8080/"],
            "the name itself until it resolves"
        );
        e.rediscover().await;
        assert_eq!(
            urls(&e),
            [
                "http://10.0.0.1:8080/",
                "http://10.0.0.2:8080/",
                "http://10.0.0.3:8080/"
            ]
        );
        let picked = e.pick(None).unwrap();
        assert_eq!(
            (picked.host.as_str(), picked.port),
            ("orders", 8080),
            "calls are attributed to the name"
        );
    }

    #[tokio::test]
    async fn replicas_that_come_and_go_keep_the_others_health() {
        let resolver = table(&[("orders", &[[10, 0, 0, 1], [10, 0, 0, 2]])]);
        let e = orders_named(&resolver, None);
        e.rediscover().await;
        let second = nth(&e, 2);
        e.record(&second, Outcome::ConnectFailed);
        assert_eq!(e.counts(), (1, 1));

        // Replica 1 is replaced by replica 3; replica 2 stays ejected.
        set(&resolver, "orders", &[[10, 0, 0, 2], [10, 0, 0, 3]]);
        e.rediscover().await;
        assert_eq!(urls(&e), ["http://10.0.0.2:8080/", "http://10.0.0.3:8080/"]);
        assert_eq!(
            e.counts(),
            (1, 1),
            "replica 2 is still ejected, replica 3 is new"
        );
        assert!(
            Arc::ptr_eq(&nth(&e, 2), &second),
            "an endpoint that stays is the same one"
        );
        for _ in 0..4 {
            assert_eq!(index(&e.pick(None).unwrap()), 3);
        }

        // A call that ends after its endpoint left changes nothing.
        let orders: Url = "http://orders:8080".parse().unwrap();
        let first_gone = endpoint("http://10.0.0.1:8080".parse().unwrap(), &orders, 0);
        e.record(&first_gone, Outcome::ConnectFailed);
        assert_eq!(e.counts(), (1, 1));
    }

    #[tokio::test]
    async fn a_refused_connection_to_a_named_endpoint_asks_for_a_lookup() {
        let resolver = table(&[("orders", &[[10, 0, 0, 1]])]);
        let e = orders_named(&resolver, None);
        e.rediscover().await;
        let stale = tokio::time::timeout(Duration::from_millis(50), e.went_stale());
        assert!(stale.await.is_err(), "nothing failed yet");
        e.record(&nth(&e, 1), Outcome::ConnectFailed);
        let stale = tokio::time::timeout(Duration::from_secs(5), e.went_stale());
        assert!(stale.await.is_ok(), "the failure asks for a lookup");

        let addresses = endpoints(1);
        addresses.record(&nth(&addresses, 0), Outcome::ConnectFailed);
        let stale = tokio::time::timeout(Duration::from_millis(50), addresses.went_stale());
        assert!(stale.await.is_err(), "an address is never looked up");
    }

    #[tokio::test]
    async fn a_name_that_stops_resolving_is_its_own_endpoint_again() {
        let resolver = table(&[("orders", &[[10, 0, 0, 1], [10, 0, 0, 2]])]);
        let e = orders_named(&resolver, None);
        e.rediscover().await;
        set(&resolver, "orders", &[]);
        e.rediscover().await;
        assert_eq!(urls(&e), ["http://orders:8080/"]);
        assert_eq!(e.counts(), (0, 1), "it cannot be called: it is ejected");
        assert!(
            e.pick(None).is_some(),
            "but still tried, being the only one"
        );
        set(&resolver, "orders", &[[10, 0, 0, 3]]);
        e.rediscover().await;
        assert_eq!(urls(&e), ["http://10.0.0.3:8080/"]);
    }

    /// One name per replica, as in the tests' stacks: when a killed
    /// replica's name stops resolving, a retry that avoids the dead address
    /// must not land on the name standing in for it.
    #[tokio::test]
    async fn a_replica_whose_name_stops_resolving_gets_no_calls_while_others_can() {
        let resolver = table(&[
            ("orders-1", &[[10, 0, 0, 1]]),
            ("orders-2", &[[10, 0, 0, 2]]),
            ("orders-3", &[[10, 0, 0, 3]]),
        ]);
        let e = Endpoints::new(
            "orders",
            Replicas {
                urls: (1..=3)
                    .map(|i| format!("http://orders-{i}:8080").parse().unwrap())
                    .collect(),
                desired: None,
                resolver: resolver.clone(),
            },
            EjectionConfig::default(),
        );
        e.rediscover().await;
        let dead = nth(&e, 2);
        e.record(&dead, Outcome::Failed);
        set(&resolver, "orders-2", &[]);
        e.rediscover().await;
        assert_eq!(
            urls(&e),
            [
                "http://10.0.0.1:8080/",
                "http://10.0.0.3:8080/",
                "http://orders-2:8080/"
            ]
        );
        assert_eq!(e.counts(), (2, 1));
        for _ in 0..6 {
            let first = e.pick(None).unwrap();
            let retry = e.pick(Some(&dead)).unwrap();
            for picked in [first, retry] {
                assert!(
                    picked.url.host_str() != Some("orders-2"),
                    "called the name of a replica that is gone"
                );
            }
        }
    }

    #[tokio::test]
    async fn addresses_and_names_mix_and_addresses_are_not_looked_up() {
        let resolver = table(&[("catalog", &[[10, 0, 0, 7]])]);
        let e = Endpoints::new(
            "catalog",
            Replicas {
                urls: vec![
                    "http://10.0.0.1:8080".parse().unwrap(),
                    "http://catalog:8080".parse().unwrap(),
                ],
                desired: None,
                resolver,
            },
            EjectionConfig::default(),
        );
        assert!(e.has_names());
        e.rediscover().await;
        assert_eq!(urls(&e), ["http://10.0.0.1:8080/", "http://10.0.0.7:8080/"]);
    }

    #[tokio::test]
    async fn the_system_resolver_finds_localhost() {
        let found = Resolver::System.resolve("localhost", 80).await.unwrap();
        assert!(found.iter().all(IpAddr::is_loopback), "{found:?}");
        assert!(!found.is_empty());
    }
}
