//! A simulated Tern cluster: one turmoil simulation with Tern's defaults
//! ([`crate::builder`]), nodes from config text ([`crate::add_node`]), client hosts
//! running the test's own code, and the run's [`Trace`], installed as the current
//! thread's subscriber for the cluster's lifetime.
//!
//! Owns: building and running the simulation. Must not: hold state that outlives a
//! run (every run of a seed starts from nothing) or read the real clock. Fault
//! schedules and oracles are to come on top of this.

use std::future::Future;
use std::time::Duration;

use crate::trace::Trace;

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
    _guard: tracing::subscriber::DefaultGuard,
}

impl Cluster {
    /// A cluster with no hosts yet, recording a [`Trace::new`] trace.
    pub fn new(seed: u64, duration: Duration) -> Self {
        Self::with_trace(seed, duration, Trace::new())
    }

    /// As [`Cluster::new`], recording into `trace` (to choose its level).
    pub fn with_trace(seed: u64, duration: Duration, trace: Trace) -> Self {
        // Installed before the simulation exists, so its first events are recorded.
        let guard = trace.install();
        let sim = crate::builder(seed, duration).build();
        tracing::info!(target: "tern_sim", seed, ?duration, "simulation built");
        Cluster {
            sim,
            trace,
            seed,
            _guard: guard,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Adds a host running a Tern node with `config` (config text), as
    /// [`crate::add_node`].
    pub fn node(&mut self, name: &str, config: &str) -> &mut Self {
        crate::add_node(&mut self.sim, name, config);
        self
    }

    /// Adds a client host running `fut`; the simulation runs until every client
    /// returns (or one fails).
    pub fn client<F>(&mut self, name: &str, fut: F) -> &mut Self
    where
        F: Future<Output = turmoil::Result> + 'static,
    {
        self.sim.client(name, fut);
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
