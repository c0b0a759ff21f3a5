//! The registry: every proxy, its listener, its connections and its toxics.
//!
//! The HTTP API is a thin layer over [`Registry`]; in-process users (tests,
//! the chaos engine) may drive a registry directly. Operations are serialised
//! by one lock, so each one sees and leaves a consistent state: when
//! disabling a proxy returns, its listener is closed and its connections are gone.
//!
//! Leases (see [`crate::lease`]) expire under the same lock: a toxic whose
//! lease runs out is removed, and a proxy taken down with a lease is enabled
//! again, as if a client had asked at that instant.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Mutex, MutexGuard, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ProxyError;
use crate::lease::Lease;
use crate::link::{self, LinkContext};
use crate::metrics::{self as proxy_metrics, LeaseKind, ProxyMetrics};
use crate::model::{self, NewProxy, NewToxic, Proxy, ProxyUpdate, Stream, Toxic, ToxicUpdate};
use crate::pipeline::{ActiveToxic, ToxicSet};
use crate::toxics::ToxicKind;

/// How long stopping a proxy waits for its connection tasks to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Running {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Running {
    /// Closes the listener and every connection, and waits for their tasks.
    async fn stop(self, proxy: &str) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(STOP_TIMEOUT, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(proxy, "connections did not close in time");
        }
    }
}

/// A toxic of a proxy: what its connections see, and its lease if it has one.
#[derive(Debug)]
struct ToxicEntry {
    active: ActiveToxic,
    lease: Option<Lease>,
}

impl ToxicEntry {
    fn to_wire(&self, now: Instant) -> Toxic {
        Toxic {
            lease_remaining_ms: self.lease.as_ref().map(|lease| lease.remaining_ms(now)),
            ..self.active.to_wire()
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// The listen address as last requested (may have port 0).
    requested_listen: String,
    /// The listen address shown: the bound address once the proxy has listened.
    listen: String,
    upstream: String,
    enabled: bool,
    toxics: Vec<ToxicEntry>,
    toxics_tx: watch::Sender<ToxicSet>,
    running: Option<Running>,
    metrics: ProxyMetrics,
    /// While the proxy is down: when it comes back up by itself.
    lease: Option<Lease>,
}

impl Entry {
    fn new(new: &NewProxy) -> Self {
        let (toxics_tx, _) = watch::channel(Arc::new(Vec::new()));
        Self {
            requested_listen: new.listen.clone(),
            listen: new.listen.clone(),
            upstream: new.upstream.clone(),
            enabled: false,
            toxics: Vec::new(),
            toxics_tx,
            running: None,
            metrics: ProxyMetrics::new(&new.name),
            lease: None,
        }
    }

    fn to_wire(&self, name: &str) -> Proxy {
        let now = Instant::now();
        Proxy {
            name: name.to_owned(),
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            enabled: self.enabled,
            toxics: self.toxics.iter().map(|t| t.to_wire(now)).collect(),
            lease_remaining_ms: self.lease.as_ref().map(|lease| lease.remaining_ms(now)),
        }
    }

    /// Binds the listener and starts accepting; `enabled` becomes true.
    async fn start(&mut self, name: &str) -> Result<(), ProxyError> {
        if self.running.is_some() {
            self.enabled = true;
            return Ok(());
        }
        let listener = bind(&self.listen).await?;
        let addr = listener.local_addr().map_err(|error| ProxyError::Listen {
            addr: self.listen.clone(),
            error,
        })?;
        self.listen = addr.to_string();
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ctx = LinkContext {
            proxy: Arc::from(name),
            upstream: Arc::from(self.upstream.as_str()),
            toxics: self.toxics_tx.subscribe(),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            metrics: self.metrics.clone(),
        };
        tracker.spawn(link::accept_loop(listener, ctx));
        self.running = Some(Running { cancel, tracker });
        self.enabled = true;
        proxy_metrics::set_enabled(name, true);
        tracing::info!(proxy = name, listen = %self.listen, upstream = %self.upstream, "proxy listening");
        Ok(())
    }

    /// Closes the listener and all connections; `enabled` is left to the caller.
    async fn stop(&mut self, name: &str) {
        if let Some(running) = self.running.take() {
            running.stop(name).await;
            tracing::info!(proxy = name, "proxy stopped");
        }
        proxy_metrics::set_enabled(name, false);
    }

    /// Hands the current toxics to every connection.
    fn publish(&self, name: &str) {
        let set: Vec<ActiveToxic> = self.toxics.iter().map(|t| t.active.clone()).collect();
        self.toxics_tx.send_replace(Arc::new(set));
        let types: Vec<&str> = self
            .toxics
            .iter()
            .map(|t| t.active.kind.type_name())
            .collect();
        proxy_metrics::set_toxics(name, &types);
    }

    /// Drops every lease, cancelling its timer.
    fn drop_leases(&mut self) {
        self.lease = None;
        for toxic in &mut self.toxics {
            toxic.lease = None;
        }
    }

    fn toxic_index(&self, proxy: &str, toxic: &str) -> Result<usize, ProxyError> {
        self.toxics
            .iter()
            .position(|t| t.active.name == toxic)
            .ok_or_else(|| ProxyError::ToxicNotFound {
                proxy: proxy.to_owned(),
                toxic: toxic.to_owned(),
            })
    }
}

/// Checks `host:port`; `port_zero` says whether port 0 is allowed.
fn check_address(field: &'static str, text: &str, port_zero: bool) -> Result<(), ProxyError> {
    let invalid = |reason: &str| ProxyError::InvalidField {
        field,
        reason: format!("{text:?} {reason}"),
    };
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| invalid("is not of the form host:port"))?;
    if host.is_empty() || host == "[]" {
        return Err(invalid("has no host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("does not end in a port number (0-65535)"))?;
    if port == 0 && !port_zero {
        return Err(invalid("has port 0"));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ProxyError> {
    if name.is_empty() {
        return Err(ProxyError::MissingField("name"));
    }
    if name.chars().any(|c| c == '/' || c.is_control()) {
        return Err(ProxyError::InvalidField {
            field: "name",
            reason: format!("{name:?} contains '/' or a control character"),
        });
    }
    Ok(())
}

fn check_new_proxy(new: &NewProxy) -> Result<(), ProxyError> {
    check_name(&new.name)?;
    check_address("listen", &new.listen, true)?;
    check_address("upstream", &new.upstream, false)
}

fn check_toxicity(toxicity: f32) -> Result<(), ProxyError> {
    if (0.0..=1.0).contains(&toxicity) {
        Ok(())
    } else {
        Err(ProxyError::InvalidField {
            field: "toxicity",
            reason: format!("must be between 0 and 1, not {toxicity}"),
        })
    }
}

async fn bind(listen: &str) -> Result<TcpListener, ProxyError> {
    let rejected = |reason: String| ProxyError::ListenRejected {
        addr: listen.to_owned(),
        reason,
    };
    let addr: SocketAddr = match listen.parse() {
        Ok(addr) => addr,
        Err(_) => tokio::net::lookup_host(listen)
            .await
            .map_err(|err| rejected(format!("cannot resolve it: {err}")))?
            .next()
            .ok_or_else(|| rejected("it resolves to no address".to_owned()))?,
    };
    TcpListener::bind(addr).await.map_err(|error| {
        use std::io::ErrorKind;
        match error.kind() {
            ErrorKind::AddrInUse => ProxyError::ListenInUse {
                addr: listen.to_owned(),
            },
            ErrorKind::AddrNotAvailable | ErrorKind::PermissionDenied | ErrorKind::InvalidInput => {
                rejected(error.to_string())
            }
            _ => ProxyError::Listen {
                addr: listen.to_owned(),
                error,
            },
        }
    })
}

#[derive(Debug, Default)]
struct State {
    proxies: BTreeMap<String, Entry>,
    next_toxic_id: u64,
    next_lease_id: u64,
    shut_down: bool,
    /// The registry itself, for the lease timers (weak: they must not keep
    /// a dropped registry alive).
    weak: Weak<Mutex<State>>,
}

impl State {
    /// Arms a lease whose expiry is `expire(registry, lease id)`.
    fn arm<F, Fut>(&mut self, ttl: Duration, expire: F) -> Lease
    where
        F: FnOnce(Weak<Mutex<State>>, u64) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.next_lease_id += 1;
        let id = self.next_lease_id;
        Lease::arm(id, ttl, expire(self.weak.clone(), id))
    }

    fn entry(&self, name: &str) -> Result<&Entry, ProxyError> {
        self.proxies
            .get(name)
            .ok_or_else(|| ProxyError::ProxyNotFound(name.to_owned()))
    }

    fn entry_mut(&mut self, name: &str) -> Result<&mut Entry, ProxyError> {
        self.proxies
            .get_mut(name)
            .ok_or_else(|| ProxyError::ProxyNotFound(name.to_owned()))
    }

    async fn create(&mut self, new: &NewProxy) -> Result<Proxy, ProxyError> {
        check_new_proxy(new)?;
        if self.proxies.contains_key(&new.name) {
            return Err(ProxyError::ProxyExists(new.name.clone()));
        }
        let mut entry = Entry::new(new);
        if new.enabled {
            entry.start(&new.name).await?;
        } else {
            proxy_metrics::set_enabled(&new.name, false);
        }
        entry.publish(&new.name);
        let proxy = entry.to_wire(&new.name);
        self.proxies.insert(new.name.clone(), entry);
        Ok(proxy)
    }

    async fn update(&mut self, name: &str, update: &ProxyUpdate) -> Result<Proxy, ProxyError> {
        if let Some(listen) = &update.listen {
            check_address("listen", listen, true)?;
        }
        if let Some(upstream) = &update.upstream {
            check_address("upstream", upstream, false)?;
        }
        // None: keep the lease; Some(None): clear it; Some(Some(ttl)): (re)arm it.
        let lease = update.lease_ms.map(model::check_lease).transpose()?;
        let current = self.entry(name)?;
        let enabled = update.enabled.unwrap_or(current.enabled);
        if lease.is_some() && enabled {
            let reason = if update.enabled == Some(true) {
                "cannot go with \"enabled\": true (enabling a proxy clears its lease)".to_owned()
            } else {
                format!(
                    "applies only to a proxy that is down, and proxy {name:?} is enabled; \
                     send \"enabled\": false with it to take the proxy down with a lease"
                )
            };
            return Err(ProxyError::InvalidField {
                field: "lease_ms",
                reason,
            });
        }
        let new_lease = match lease {
            Some(Some(ttl)) => {
                let proxy = name.to_owned();
                Some(self.arm(ttl, move |state, id| expire_proxy_lease(state, proxy, id)))
            }
            _ => None,
        };
        let entry = self.entry_mut(name)?;
        entry.apply(name, update, enabled).await?;
        if enabled {
            entry.lease = None;
        } else if lease.is_some() {
            // Replacing the lease cancels the old timer.
            entry.lease = new_lease;
        }
        Ok(entry.to_wire(name))
    }
}

impl Entry {
    /// Applies an update's address, upstream and enabled flag (not its lease).
    async fn apply(
        &mut self,
        name: &str,
        update: &ProxyUpdate,
        enabled: bool,
    ) -> Result<(), ProxyError> {
        let entry = self;
        let listen_changed = update
            .listen
            .as_ref()
            .is_some_and(|l| *l != entry.listen && *l != entry.requested_listen);
        let upstream_changed = update
            .upstream
            .as_ref()
            .is_some_and(|u| *u != entry.upstream);
        if !listen_changed && !upstream_changed && enabled == entry.enabled {
            return Ok(());
        }
        let before = (
            entry.requested_listen.clone(),
            entry.listen.clone(),
            entry.upstream.clone(),
            entry.enabled,
        );
        // A new address or upstream restarts the proxy, dropping its connections.
        entry.stop(name).await;
        entry.enabled = false;
        if let Some(listen) = update.listen.as_ref().filter(|_| listen_changed) {
            entry.requested_listen = listen.clone();
            entry.listen = listen.clone();
        }
        if let Some(upstream) = update.upstream.as_ref().filter(|_| upstream_changed) {
            entry.upstream = upstream.clone();
        }
        if enabled && let Err(err) = entry.start(name).await {
            // Put the proxy back the way it was, as far as possible.
            (
                entry.requested_listen,
                entry.listen,
                entry.upstream,
                entry.enabled,
            ) = before;
            if entry.enabled
                && let Err(restart) = entry.start(name).await
            {
                tracing::warn!(proxy = name, error = %restart, "cannot restart the proxy as it was");
                entry.enabled = false;
            }
            return Err(err);
        }
        Ok(())
    }
}

impl State {
    async fn delete(&mut self, name: &str) -> Result<(), ProxyError> {
        let mut entry = self
            .proxies
            .remove(name)
            .ok_or_else(|| ProxyError::ProxyNotFound(name.to_owned()))?;
        entry.stop(name).await;
        entry.drop_leases();
        entry.toxics.clear();
        entry.publish(name);
        tracing::info!(proxy = name, "proxy deleted");
        Ok(())
    }
}

/// A proxy's lease ran out: enables the proxy again, unless the lease was
/// renewed or dropped meanwhile.
async fn expire_proxy_lease(state: Weak<Mutex<State>>, proxy: String, lease_id: u64) {
    let Some(state) = state.upgrade() else { return };
    let mut state = state.lock().await;
    if state.shut_down {
        return;
    }
    let Some(entry) = state.proxies.get_mut(&proxy) else {
        return;
    };
    if entry.lease.as_ref().map(Lease::id) != Some(lease_id) {
        return;
    }
    if let Some(lease) = entry.lease.take() {
        lease.expired();
    }
    entry.metrics.lease_expired(LeaseKind::Proxy);
    tracing::warn!(proxy = %proxy, "proxy lease expired: enabling the proxy again");
    if !entry.enabled
        && let Err(err) = entry.start(&proxy).await
    {
        tracing::warn!(proxy = %proxy, error = %err, "cannot enable the proxy after its lease expired; it stays down");
    }
}

/// A toxic's lease ran out: removes the toxic, unless the lease was renewed
/// or dropped meanwhile.
async fn expire_toxic_lease(state: Weak<Mutex<State>>, proxy: String, lease_id: u64) {
    let Some(state) = state.upgrade() else { return };
    let mut state = state.lock().await;
    if state.shut_down {
        return;
    }
    let Some(entry) = state.proxies.get_mut(&proxy) else {
        return;
    };
    let Some(index) = entry
        .toxics
        .iter()
        .position(|t| t.lease.as_ref().map(Lease::id) == Some(lease_id))
    else {
        return;
    };
    let mut removed = entry.toxics.remove(index);
    if let Some(lease) = removed.lease.take() {
        lease.expired();
    }
    entry.publish(&proxy);
    entry.metrics.lease_expired(LeaseKind::Toxic);
    tracing::warn!(
        proxy = %proxy,
        toxic = %removed.active.name,
        "toxic lease expired: toxic removed"
    );
}

/// Every proxy of one fault-proxy server, with their listeners and toxics.
///
/// Cloning gives another handle on the same registry. Proxies keep listening
/// until they are disabled or deleted, or until [`Registry::shutdown`].
#[derive(Debug, Clone)]
pub struct Registry {
    state: Arc<Mutex<State>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        let state = Arc::new_cyclic(|weak| {
            Mutex::new(State {
                weak: weak.clone(),
                ..State::default()
            })
        });
        Self { state }
    }

    async fn lock(&self) -> Result<MutexGuard<'_, State>, ProxyError> {
        let state = self.state.lock().await;
        if state.shut_down {
            return Err(ProxyError::ShuttingDown);
        }
        Ok(state)
    }

    /// Every proxy, by name.
    pub async fn proxies(&self) -> BTreeMap<String, Proxy> {
        let state = self.state.lock().await;
        state
            .proxies
            .iter()
            .map(|(name, entry)| (name.clone(), entry.to_wire(name)))
            .collect()
    }

    /// One proxy with its toxics.
    pub async fn proxy(&self, name: &str) -> Result<Proxy, ProxyError> {
        let state = self.state.lock().await;
        Ok(state.entry(name)?.to_wire(name))
    }

    /// Creates a proxy, listening at once if it is enabled.
    pub async fn create_proxy(&self, new: &NewProxy) -> Result<Proxy, ProxyError> {
        self.lock().await?.create(new).await
    }

    /// Changes a proxy's listen address, upstream or enabled flag, or its lease.
    ///
    /// A new listen address or upstream restarts the proxy and drops its
    /// connections; `enabled: false` closes the listener and every connection.
    /// `lease_ms` (with `enabled: false`, or while the proxy is down) enables
    /// it again after that many milliseconds, 0 clears the lease; `enabled:
    /// true` clears it too. `lease_ms` on a proxy that ends up enabled is refused.
    pub async fn update_proxy(
        &self,
        name: &str,
        update: &ProxyUpdate,
    ) -> Result<Proxy, ProxyError> {
        self.lock().await?.update(name, update).await
    }

    /// Deletes a proxy, closing its listener and connections.
    pub async fn delete_proxy(&self, name: &str) -> Result<(), ProxyError> {
        self.lock().await?.delete(name).await
    }

    /// Creates or replaces proxies in bulk.
    ///
    /// A proxy that already exists with the same listen address and upstream
    /// is kept (toxics and connections included) and only gets the enabled
    /// flag; one that differs is replaced. Every proxy is checked before any
    /// is touched.
    pub async fn populate(&self, proxies: &[NewProxy]) -> Result<Vec<Proxy>, ProxyError> {
        for (index, new) in proxies.iter().enumerate() {
            check_new_proxy(new)?;
            if proxies[..index].iter().any(|other| other.name == new.name) {
                return Err(ProxyError::InvalidField {
                    field: "name",
                    reason: format!("{:?} is listed twice", new.name),
                });
            }
        }
        let mut state = self.lock().await?;
        let mut result = Vec::with_capacity(proxies.len());
        for new in proxies {
            let same = state.proxies.get(&new.name).map(|entry| {
                (new.listen == entry.requested_listen || new.listen == entry.listen)
                    && new.upstream == entry.upstream
            });
            let proxy = match same {
                Some(true) => {
                    state
                        .update(&new.name, &ProxyUpdate::enabled(new.enabled))
                        .await?
                }
                Some(false) => {
                    state.delete(&new.name).await?;
                    state.create(new).await?
                }
                None => state.create(new).await?,
            };
            result.push(proxy);
        }
        Ok(result)
    }

    /// Enables every proxy and removes every toxic, dropping every lease.
    pub async fn reset(&self) -> Result<(), ProxyError> {
        let mut state = self.lock().await?;
        let mut first_error = None;
        for (name, entry) in &mut state.proxies {
            entry.drop_leases();
            entry.toxics.clear();
            entry.publish(name);
            if !entry.enabled
                && let Err(err) = entry.start(name).await
            {
                tracing::warn!(proxy = %name, error = %err, "cannot re-enable the proxy");
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The toxics of a proxy, in the order they apply.
    pub async fn toxics(&self, proxy: &str) -> Result<Vec<Toxic>, ProxyError> {
        Ok(self.proxy(proxy).await?.toxics)
    }

    /// One toxic of a proxy.
    pub async fn toxic(&self, proxy: &str, toxic: &str) -> Result<Toxic, ProxyError> {
        let state = self.state.lock().await;
        let entry = state.entry(proxy)?;
        Ok(entry.toxics[entry.toxic_index(proxy, toxic)?].to_wire(Instant::now()))
    }

    /// Adds a toxic; it applies at once to new and existing connections.
    /// With `lease_ms`, it is removed that many milliseconds later unless
    /// renewed ([`Registry::update_toxic`]).
    pub async fn add_toxic(&self, proxy: &str, new: &NewToxic) -> Result<Toxic, ProxyError> {
        let kind = ToxicKind::from_attributes(&new.toxic_type, &new.attributes)?;
        if kind.upstream_only() && new.stream != Stream::Upstream {
            return Err(ProxyError::InvalidField {
                field: "stream",
                reason: format!(
                    "{} acts on HTTP requests, which travel client → server: it needs \"stream\": \"upstream\", not {:?}",
                    new.toxic_type,
                    new.stream.as_str()
                ),
            });
        }
        check_toxicity(new.toxicity)?;
        let lease = new.lease_ms.map(model::check_lease).transpose()?.flatten();
        let name = new.effective_name();
        check_name(&name)?;
        let mut state = self.lock().await?;
        let id = state.next_toxic_id + 1;
        let entry = state.entry(proxy)?;
        if entry.toxics.iter().any(|t| t.active.name == name) {
            return Err(ProxyError::ToxicExists {
                proxy: proxy.to_owned(),
                toxic: name,
            });
        }
        let lease = lease.map(|ttl| {
            let proxy = proxy.to_owned();
            state.arm(ttl, move |state, lease_id| {
                expire_toxic_lease(state, proxy, lease_id)
            })
        });
        let toxic = ToxicEntry {
            active: ActiveToxic {
                id,
                revision: 0,
                name,
                stream: new.stream,
                toxicity: new.toxicity,
                kind,
                stats: Arc::default(),
            },
            lease,
        };
        let wire = toxic.to_wire(Instant::now());
        let entry = state.entry_mut(proxy)?;
        entry.toxics.push(toxic);
        entry.publish(proxy);
        state.next_toxic_id = id;
        tracing::info!(
            proxy,
            toxic = %wire.name,
            toxic_type = %wire.toxic_type,
            stream = %wire.stream,
            lease_ms = wire.lease_remaining_ms,
            "toxic added"
        );
        Ok(wire)
    }

    /// Changes a toxic's toxicity or attributes; connections apply it at once,
    /// keeping the data the toxic holds and its stats.
    ///
    /// `lease_ms` renews the lease (the toxic is removed that many
    /// milliseconds from now) or, with 0, clears it. An update that carries
    /// only `lease_ms` leaves the connections' stages as they are.
    pub async fn update_toxic(
        &self,
        proxy: &str,
        toxic: &str,
        update: &ToxicUpdate,
    ) -> Result<Toxic, ProxyError> {
        if let Some(toxicity) = update.toxicity {
            check_toxicity(toxicity)?;
        }
        // None: keep the lease; Some(None): clear it; Some(Some(ttl)): renew it.
        let lease = update.lease_ms.map(model::check_lease).transpose()?;
        let mut state = self.lock().await?;
        let entry = state.entry(proxy)?;
        let index = entry.toxic_index(proxy, toxic)?;
        let current = &entry.toxics[index].active;
        let changed = if update.changes_toxic() {
            let mut changed = current.clone();
            changed.kind = changed.kind.with_attributes(&update.attributes)?;
            if let Some(toxicity) = update.toxicity {
                changed.toxicity = toxicity;
            }
            changed.revision += 1;
            Some(changed)
        } else {
            None
        };
        let new_lease = match lease {
            Some(Some(ttl)) => {
                let proxy = proxy.to_owned();
                Some(state.arm(ttl, move |state, lease_id| {
                    expire_toxic_lease(state, proxy, lease_id)
                }))
            }
            _ => None,
        };
        let entry = state.entry_mut(proxy)?;
        let current = &mut entry.toxics[index];
        if lease.is_some() {
            // Replacing the lease cancels the old timer.
            current.lease = new_lease;
        }
        let wire = if let Some(changed) = changed {
            current.active = changed;
            let wire = current.to_wire(Instant::now());
            entry.publish(proxy);
            wire
        } else {
            current.to_wire(Instant::now())
        };
        tracing::info!(
            proxy,
            toxic,
            lease_ms = wire.lease_remaining_ms,
            "toxic updated"
        );
        Ok(wire)
    }

    /// Removes a toxic; the data it held moves on, in order.
    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ProxyError> {
        let mut state = self.lock().await?;
        let entry = state.entry_mut(proxy)?;
        let index = entry.toxic_index(proxy, toxic)?;
        entry.toxics.remove(index);
        entry.publish(proxy);
        tracing::info!(proxy, toxic, "toxic removed");
        Ok(())
    }

    /// Stops every proxy and refuses further changes.
    pub async fn shutdown(&self) {
        let mut state = self.state.lock().await;
        state.shut_down = true;
        for (name, entry) in &mut state.proxies {
            entry.drop_leases();
            entry.stop(name).await;
            entry.enabled = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_host_and_a_port() {
        assert!(check_address("listen", "127.0.0.1:0", true).is_ok());
        assert!(check_address("listen", "[::]:8080", true).is_ok());
        assert!(check_address("upstream", "payments:8080", false).is_ok());
        for bad in ["payments", ":8080", "host:", "host:99999", "host:http"] {
            assert!(check_address("upstream", bad, false).is_err(), "{bad}");
        }
        assert!(check_address("upstream", "host:0", false).is_err());
    }

    fn lease_id(state: &State, toxic: &str) -> Option<u64> {
        let entry = state.proxies.get("p")?;
        let index = entry.toxic_index("p", toxic).ok()?;
        entry.toxics[index].lease.as_ref().map(Lease::id)
    }

    /// An expiry that lost the race to a renewal finds another lease id and
    /// does nothing; a renewal that carries only a lease keeps the stages.
    #[tokio::test]
    async fn a_stale_expiry_leaves_a_renewed_toxic_alone() {
        let registry = Registry::new();
        registry
            .create_proxy(&NewProxy::new("p", "127.0.0.1:0", "127.0.0.1:9"))
            .await
            .unwrap();
        let day = Some(86_400_000);
        let new = NewToxic {
            lease_ms: day,
            ..NewToxic::new(&ToxicKind::from_attributes("timeout", &Default::default()).unwrap())
        };
        registry.add_toxic("p", &new).await.unwrap();
        let first = lease_id(&*registry.state.lock().await, "timeout_downstream");
        let renewal = ToxicUpdate {
            lease_ms: day,
            ..ToxicUpdate::default()
        };
        registry
            .update_toxic("p", "timeout_downstream", &renewal)
            .await
            .unwrap();
        let second = lease_id(&*registry.state.lock().await, "timeout_downstream");
        assert!(first.is_some() && second.is_some() && first != second);
        {
            let state = registry.state.lock().await;
            assert_eq!(state.proxies["p"].toxics[0].active.revision, 0);
        }

        let weak = Arc::downgrade(&registry.state);
        expire_toxic_lease(weak.clone(), "p".into(), first.unwrap()).await;
        assert_eq!(registry.toxics("p").await.unwrap().len(), 1);
        expire_toxic_lease(weak, "p".into(), second.unwrap()).await;
        assert!(registry.toxics("p").await.unwrap().is_empty());
        registry.shutdown().await;
    }

    #[test]
    fn names_must_fit_in_a_path() {
        assert!(check_name("orders_payments").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a/b").is_err());
    }
}
