//! A simulated Tern cluster: one turmoil simulation with Tern's defaults
//! ([`crate::builder`]), nodes from config text ([`crate::add_node_with`], each seeded
//! from the cluster's seed and its name), client hosts running the test's own code or
//! an observer ([`crate::oracle`]), a tampering proxy ([`crate::mitm`]), faults applied
//! by hand or from a [`Schedule`], and the run's [`Trace`], installed as the current
//! thread's subscriber for the cluster's lifetime. Each node host has its own
//! in-memory disks ([`Cluster::disks`]), kept across its restarts; a crash or restart
//! of the host is a power cut for them ([`MemDisks::crash`]).
//!
//! Owns: building and running the simulation, and applying faults at their time.
//! Must not: hold state that outlives a run (every run of a seed starts from nothing),
//! read the real clock, or judge a run (the oracles do).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tern_node::dvr::{MemDisks, MemStore};

use crate::faults::{fmt_ms, Action, Schedule};
use crate::mitm::Mitm;
use crate::oracle::{Observation, ObserverSpec};
use crate::trace::Trace;
use crate::{node_seed, ConfigSlot, NodeSpec};

/// One simulation run. The trace is the thread's default subscriber while the cluster
/// lives, so keep one cluster at a time per thread (guards must drop in order).
///
/// Trace lines name their node without a span of ours: turmoil 0.7 enters
/// `node{name=...}` around every tick of a host, which covers every task the node
/// spawns (an `.instrument` on the host future would cover only that future).
pub struct Cluster {
    // Field order is drop order: the simulation's hosts are dropped while the trace
    // is still installed, so nothing they log goes to another subscriber.
    sim: turmoil::Sim<'static>,
    trace: Trace,
    seed: u64,
    /// Every host added, in order (a crash isolates a host from all the others).
    hosts: Vec<String>,
    /// The disks of each node host.
    disks: BTreeMap<String, Arc<MemDisks>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Cluster {
    /// A cluster with no hosts yet, recording a [`Trace::new`] trace.
    pub fn new(seed: u64, duration: Duration) -> Self {
        Self::with_trace(seed, duration, Trace::new())
    }

    /// As [`Cluster::new`], recording into `trace` (to choose its level).
    pub fn with_trace(seed: u64, duration: Duration, trace: Trace) -> Self {
        Self::with_tick(seed, duration, trace, crate::TICK)
    }

    /// As [`Cluster::with_trace`], stepping by `tick` ([`crate::builder_with_tick`]).
    pub fn with_tick(seed: u64, duration: Duration, trace: Trace, tick: Duration) -> Self {
        // Installed before the simulation exists, so its first events are recorded.
        let guard = trace.install();
        let sim = crate::builder_with_tick(seed, duration, tick).build();
        tracing::info!(target: "tern_sim", seed, ?duration, "simulation built");
        Cluster {
            sim,
            trace,
            seed,
            hosts: Vec::new(),
            disks: BTreeMap::new(),
            _guard: guard,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Adds a host running a Tern node with `config` (config text), its RNG seeded
    /// from the cluster's seed and `name`.
    pub fn node(&mut self, name: &str, config: &str) -> &mut Self {
        let spec = NodeSpec::new(config, node_seed(self.seed, name));
        self.node_with(name, spec)
    }

    /// Adds a host running a Tern node as `spec` says.
    pub fn node_with(&mut self, name: &str, spec: NodeSpec) -> &mut Self {
        self.disks.insert(name.to_owned(), spec.disks.clone());
        crate::add_node_with(&mut self.sim, name, spec);
        self.hosts.push(name.to_owned());
        self
    }

    /// Adds a node whose config the test may change before a restart; returns the
    /// handle to change it.
    pub fn switchable_node(&mut self, name: &str, config: &str) -> ConfigSlot {
        let spec = NodeSpec::new(config, node_seed(self.seed, name));
        let slot = spec.config.clone();
        self.node_with(name, spec);
        slot
    }

    /// The in-memory disks of node host `host` (every start of the node uses them).
    ///
    /// # Panics
    /// If `host` is not a node of this cluster.
    pub fn disks(&self, host: &str) -> Arc<MemDisks> {
        self.disks
            .get(host)
            .unwrap_or_else(|| panic!("{host} is not a node of this cluster"))
            .clone()
    }

    /// The disk of DVR path `path` on node host `host` (made on first use, so a test
    /// may set its latency or capacity before the node starts).
    pub fn disk(&self, host: &str, path: &str) -> Arc<MemStore> {
        self.disks(host).disk(path)
    }

    /// Adds an observer client host (seeded from the cluster's seed and its host
    /// name); it records until the simulation is dropped.
    pub fn observe(&mut self, mut spec: ObserverSpec) -> Observation {
        spec.seed = node_seed(self.seed, &spec.host);
        let host = spec.host.clone();
        let (obs, fut) = crate::oracle::observer(spec);
        self.sim.client(host.as_str(), fut);
        self.hosts.push(host);
        obs
    }

    /// Adds a tampering proxy host ([`crate::mitm`]).
    pub fn tamper_proxy(
        &mut self,
        name: &str,
        port: u16,
        upstream: &str,
        upstream_port: u16,
        flip_after: u64,
    ) -> Mitm {
        self.hosts.push(name.to_owned());
        crate::mitm::add_tamper_proxy(
            &mut self.sim,
            name,
            port,
            upstream,
            upstream_port,
            flip_after,
        )
    }

    /// Applies one fault action now, and says so in the trace.
    ///
    /// A crash or restart first cuts the host off from every other host, and repairs
    /// those links right after: whatever the dying software sends (the FIN or RST of
    /// each of its sockets as turmoil drops its runtime) is lost, as when a machine
    /// loses power. Peers learn of the crash by silence (the dead-peer timeout), or by
    /// an RST once the host runs again. Not a choice of convenience: tokio drops a
    /// runtime's tasks in an order that depends on its process-wide task ids, so those
    /// FINs would leave in an order that changes with whatever else the process ran,
    /// and the same seed would not replay. For the same reason the trace records what
    /// the teardown logs as a sorted set ([`Trace::unordered`]). Links the crash
    /// repairs must not be under
    /// another fault at that moment ([`crate::faults::Schedule::random`] never
    /// overlaps faults).
    ///
    /// A crash or restart is also a power cut for the host's disks, once its software
    /// is torn down: what the node wrote and did not fsync is lost
    /// ([`MemDisks::crash`]). Disk actions change the host's in-memory disk of that
    /// path.
    pub fn apply(&mut self, action: &Action) {
        tracing::info!(target: "tern_sim::fault", at = %fmt_ms(self.elapsed().as_millis() as u64), %action, "fault");
        match action {
            Action::Partition(a, b) => self.sim.partition(a.as_str(), b.as_str()),
            Action::Repair(a, b) => self.sim.repair(a.as_str(), b.as_str()),
            Action::PartitionOneway(a, b) => self.sim.partition_oneway(a.as_str(), b.as_str()),
            Action::RepairOneway(a, b) => self.sim.repair_oneway(a.as_str(), b.as_str()),
            Action::Hold(a, b) => self.sim.hold(a.as_str(), b.as_str()),
            Action::Release(a, b) => self.sim.release(a.as_str(), b.as_str()),
            Action::Crash(h) => {
                self.isolate(h, true);
                let sim = &mut self.sim;
                self.trace.unordered(|| sim.crash(h.as_str()));
                self.power_cut(h);
                self.isolate(h, false);
            }
            Action::Bounce(h) => {
                self.isolate(h, true);
                let sim = &mut self.sim;
                // turmoil tears the old software down and makes the new one's future
                // here, but polls it only at the next step: the power cut falls
                // between the two.
                self.trace.unordered(|| sim.bounce(h.as_str()));
                self.power_cut(h);
                self.isolate(h, false);
            }
            Action::DiskCapacity(h, p, c) => self.disk(h, p).set_capacity(*c),
            Action::DiskErrors(h, p, k, skip, n) => self.disk(h, p).fail_later(*k, *skip, *n),
        }
    }

    /// Drops what `host`'s disks hold but have not made durable.
    fn power_cut(&self, host: &str) {
        if let Some(d) = self.disks.get(host) {
            d.crash();
        }
    }

    /// Partitions (or repairs) `host` from (with) every other host.
    fn isolate(&mut self, host: &str, cut: bool) {
        for other in self.hosts.iter().filter(|o| o.as_str() != host) {
            if cut {
                self.sim.partition(host, other.as_str());
            } else {
                self.sim.repair(host, other.as_str());
            }
        }
    }

    /// Runs until `until`, applying each action of `schedule` when its time comes
    /// (actions already due are applied at once).
    pub fn run_schedule(&mut self, schedule: &Schedule, until: Duration) -> turmoil::Result {
        for (at, action) in schedule.actions() {
            if at > until {
                break;
            }
            self.run_until(at)?;
            self.apply(&action);
        }
        self.run_until(until)
    }

    /// Adds a client host running `fut`; the simulation runs until every client
    /// returns (or one fails).
    pub fn client<F>(&mut self, name: &str, fut: F) -> &mut Self
    where
        F: Future<Output = turmoil::Result> + 'static,
    {
        self.sim.client(name, fut);
        self.hosts.push(name.to_owned());
        self
    }

    /// Runs until every client has returned; fails when one fails or the simulation's
    /// duration ends first. Like `Sim::run`, but step by step so that the trace knows
    /// the time of each step (with no client, it returns after one step).
    pub fn run(&mut self) -> turmoil::Result {
        while !self.step()? {}
        Ok(())
    }

    /// Steps the simulation until `at` of simulated time has elapsed, whether or not
    /// there are clients and whether or not they have returned.
    pub fn run_until(&mut self, at: Duration) -> turmoil::Result {
        while self.sim.elapsed() < at {
            self.step()?;
        }
        Ok(())
    }

    /// One tick of every host and of the network; whether every client has returned.
    pub fn step(&mut self) -> turmoil::Result<bool> {
        self.trace.set_step_start(self.sim.elapsed());
        self.sim.step()
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.sim.elapsed()
    }

    /// The simulation itself, for what the cluster does not wrap yet (faults,
    /// crashes, latencies).
    pub fn sim(&mut self) -> &mut turmoil::Sim<'static> {
        &mut self.sim
    }

    /// The trace recorded so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }
}
