//! Trace fingerprints (docs/design.md §4 "Determinism", docs/simulation.md): a tracing `Layer`
//! that renders every event of a simulation as one line — simulated time, turmoil
//! host, spans, target, level, message, fields in recorded order — and hashes them.
//!
//! Owns: the rendered line format and its 64-bit FNV-1a hash. Must not: read wall
//! time, thread ids, absolute instants or anything else that differs between two runs
//! of one seed; install itself globally (tests run in parallel on separate threads,
//! so it is a thread-local default subscriber, see [`Trace::install`]).

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// The name and field of the span turmoil enters around every tick of a host
/// (`node{name=...}`, turmoil 0.7 `Sim::step`): the trace's host column.
const HOST_SPAN: &str = "node";
const HOST_FIELD: &str = "name";

/// Longer values (turmoil's hex dump of a TCP segment) are rendered as their length
/// and FNV-1a: still fingerprinted, without megabytes of trace.
const MAX_VALUE_CHARS: usize = 200;

/// 64-bit FNV-1a, incremental.
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Fnv64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub fn new() -> Self {
        Fnv64(Self::OFFSET)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Self::new()
    }
}

/// FNV-1a of `bytes` in one call.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = Fnv64::new();
    h.write(bytes);
    h.finish()
}

#[derive(Default)]
struct State {
    lines: Vec<String>,
    /// The last simulated time read from turmoil, and the start of the current step
    /// when the driver says it ([`Trace::set_step_start`]): lower bounds of the time,
    /// for events emitted where turmoil cannot tell it (its own network events, emitted
    /// while it holds its world; events outside any host).
    last_time: Duration,
    step_start: Duration,
    /// Lines recorded inside [`Trace::unordered`]: appended sorted when it ends.
    unordered: Option<Vec<String>>,
}

/// The recorded trace of one simulation run. Cloning shares the same lines.
#[derive(Clone)]
pub struct Trace {
    state: Arc<Mutex<State>>,
    max_level: Level,
    echo: bool,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

impl Trace {
    /// Records events at `DEBUG` and above. turmoil logs every tick and every TCP
    /// segment (as hex) at `TRACE`; use [`Trace::with_max_level`] to include them.
    /// Lines are echoed to stderr (shown by the test harness on failure) when the
    /// environment variable `TERN_SIM_TRACE` is set.
    pub fn new() -> Self {
        Trace {
            state: Arc::new(Mutex::new(State::default())),
            max_level: Level::DEBUG,
            echo: std::env::var_os("TERN_SIM_TRACE").is_some(),
        }
    }

    pub fn with_max_level(mut self, level: Level) -> Self {
        self.max_level = level;
        self
    }

    pub fn with_echo(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }

    /// Makes this trace the current thread's default subscriber until the guard drops.
    /// turmoil polls every host on the thread that runs the simulation, so this sees
    /// all of a simulation's events and none of a test running beside it.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::registry().with(self.layer());
        tracing::subscriber::set_default(subscriber)
    }

    /// The layer that records into this trace, to compose with other layers.
    pub fn layer(&self) -> TraceLayer {
        TraceLayer {
            trace: self.clone(),
            hosts: Mutex::new(Vec::new()),
        }
    }

    /// Tells the trace that the simulation is about to step from `elapsed`: events
    /// whose exact time turmoil cannot tell are stamped with it (marked `~`).
    pub fn set_step_start(&self, elapsed: Duration) {
        self.lock().step_start = elapsed;
    }

    /// Records what `f` logs as a set: its lines are appended in sorted order when it
    /// returns. For work whose events are deterministic but whose order is not: the
    /// teardown of a crashed host, whose tasks tokio drops in an order that depends on
    /// its process-wide task ids (see `Cluster::apply`).
    pub fn unordered<R>(&self, f: impl FnOnce() -> R) -> R {
        let outer = self.lock().unordered.replace(Vec::new());
        let r = f();
        let mut st = self.lock();
        let mut lines = std::mem::replace(&mut st.unordered, outer).unwrap_or_default();
        lines.sort();
        match &mut st.unordered {
            Some(outer) => outer.extend(lines),
            None => st.lines.extend(lines),
        }
        r
    }

    /// A copy of the lines recorded so far.
    pub fn lines(&self) -> Vec<String> {
        self.lock().lines.clone()
    }

    pub fn len(&self) -> usize {
        self.lock().lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().lines.is_empty()
    }

    /// FNV-1a over every line, each followed by `\n`.
    pub fn hash(&self) -> u64 {
        let mut h = Fnv64::new();
        for line in &self.lock().lines {
            h.write(line.as_bytes());
            h.write(b"\n");
        }
        h.finish()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The first line where two traces differ: `(index, left, right)`, a missing line
/// being `None`. `None` when they are equal.
pub fn first_difference(
    a: &[String],
    b: &[String],
) -> Option<(usize, Option<String>, Option<String>)> {
    let n = a.len().max(b.len());
    (0..n).find_map(|i| {
        let (x, y) = (a.get(i), b.get(i));
        (x != y).then(|| (i, x.cloned(), y.cloned()))
    })
}

/// See [`Trace::layer`].
pub struct TraceLayer {
    trace: Trace,
    /// The host names seen on `node` spans, shared by every span that names one.
    hosts: Mutex<Vec<Arc<str>>>,
}

/// What the layer keeps in a span's extensions.
struct SpanFields {
    /// `name=value` pairs, space-separated, in recorded order (left empty on a `node`
    /// span that names its host: such a span is never rendered).
    rendered: String,
    /// The value of `name` on a `node` span.
    host: Option<Arc<str>>,
}

/// Reads the host of a `node` span made as turmoil makes it (one field, `name`, a
/// short one-line string) without rendering it, the name shared with the spans
/// before it: turmoil makes one such span per host and tick, the layer's most
/// frequent work. `None` (anything else) takes the general path, which gives the
/// same host.
struct HostOnly<'a> {
    hosts: &'a mut Vec<Arc<str>>,
    host: Option<Arc<str>>,
    other: bool,
}

impl HostOnly<'_> {
    fn read(attrs: &Attributes<'_>, hosts: &mut Vec<Arc<str>>) -> Option<Arc<str>> {
        let mut v = HostOnly {
            hosts,
            host: None,
            other: false,
        };
        attrs.record(&mut v);
        v.host.filter(|_| !v.other)
    }
}

impl Visit for HostOnly<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let plain = value.len() <= MAX_VALUE_CHARS && !value.contains(['\n', '\r']);
        if field.name() != HOST_FIELD || self.host.is_some() || !plain {
            self.other = true;
            return;
        }
        let known = self.hosts.iter().find(|h| &***h == value).cloned();
        self.host = Some(known.unwrap_or_else(|| {
            let h: Arc<str> = Arc::from(value);
            self.hosts.push(h.clone());
            h
        }));
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn fmt::Debug) {
        self.other = true;
    }
}

impl<S> Layer<S> for TraceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        // Spans always: they carry the host and the context of enabled events.
        metadata.is_span() || *metadata.level() <= self.trace.max_level
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if span.name() == HOST_SPAN {
            let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(host) = HostOnly::read(attrs, &mut hosts) {
                drop(hosts);
                span.extensions_mut().insert(SpanFields {
                    rendered: String::new(),
                    host: Some(host),
                });
                return;
            }
        }
        let mut v = FieldWriter::default();
        attrs.record(&mut v);
        let host = (span.name() == HOST_SPAN)
            .then(|| v.host.take())
            .flatten()
            .map(Arc::from);
        span.extensions_mut().insert(SpanFields {
            rendered: v.fields,
            host,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        let Some(fields) = ext.get_mut::<SpanFields>() else {
            return;
        };
        let mut v = FieldWriter::default();
        values.record(&mut v);
        if !v.fields.is_empty() {
            if !fields.rendered.is_empty() {
                fields.rendered.push(' ');
            }
            fields.rendered.push_str(&v.fields);
        }
        if span.name() == HOST_SPAN {
            if let Some(h) = v.host {
                fields.host = Some(Arc::from(h));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let sim_time = sim_time();

        // Spans outermost first; the innermost `node` span names the host and is not
        // repeated in the span list.
        let mut host: Option<Arc<str>> = None;
        let mut spans = String::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let ext = span.extensions();
                let fields = ext.get::<SpanFields>();
                if span.name() == HOST_SPAN {
                    if let Some(h) = fields.and_then(|f| f.host.clone()) {
                        host = Some(h);
                        continue;
                    }
                }
                spans.push_str(span.name());
                if let Some(f) = fields.filter(|f| !f.rendered.is_empty()) {
                    let _ = write!(spans, "{{{}}}", f.rendered);
                }
                spans.push(':');
            }
        }

        let mut v = FieldWriter::default();
        event.record(&mut v);

        let mut state = self.trace.lock();
        // A time read from turmoil is exact; otherwise the best lower bound known,
        // marked `~` (within a tick when the cluster drives the steps).
        let (time, mark) = match sim_time {
            Some(t) => {
                state.last_time = t;
                (t, ' ')
            }
            None => (state.last_time.max(state.step_start), '~'),
        };
        let micros = time.as_micros();
        let meta = event.metadata();
        let mut line = format!(
            "{mark}{:>7}.{:03}ms {} {:<5} {}{}:",
            micros / 1000,
            micros % 1000,
            host.as_deref().unwrap_or("-"),
            meta.level(),
            spans,
            meta.target(),
        );
        if let Some(m) = &v.message {
            line.push(' ');
            line.push_str(m);
        }
        if !v.fields.is_empty() {
            line.push(' ');
            line.push_str(&v.fields);
        }
        if self.trace.echo {
            eprintln!("{line}");
        }
        match &mut state.unordered {
            Some(set) => set.push(line),
            None => state.lines.push(line),
        }
    }
}

/// The simulated time since the start of the simulation, when turmoil can tell it:
/// inside a host's tick, on that host's paused runtime. Outside a tokio runtime the
/// host timer would be read against the real clock, so it is not asked there.
fn sim_time() -> Option<Duration> {
    tokio::runtime::Handle::try_current().ok()?;
    turmoil::sim_elapsed()
}

/// Renders fields as `name=value` in recorded order, the message apart. Values are
/// kept on one line (newlines escaped).
#[derive(Default)]
struct FieldWriter {
    message: Option<String>,
    fields: String,
    host: Option<String>,
}

impl FieldWriter {
    fn push(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        let mut rendered = String::new();
        let _ = rendered.write_fmt(value);
        let rendered = one_line(digest_long(rendered));
        if field.name() == "message" {
            self.message = Some(rendered);
            return;
        }
        if field.name() == HOST_FIELD {
            self.host = Some(rendered.clone());
        }
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}={}", field.name(), rendered);
    }
}

impl Visit for FieldWriter {
    fn record_str(&mut self, field: &Field, value: &str) {
        // Plain text, like `%value`: host names are compared as written.
        self.push(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format_args!("{value:?}"));
    }
}

fn digest_long(s: String) -> String {
    if s.len() > MAX_VALUE_CHARS {
        format!("<{} bytes fnv={:016x}>", s.len(), fnv1a64(s.as_bytes()))
    } else {
        s
    }
}

fn one_line(s: String) -> String {
    if s.contains(['\n', '\r']) {
        s.replace('\n', "\\n").replace('\r', "\\r")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn trace_renders_spans_fields_in_order_outside_a_simulation() {
        let trace = Trace::new();
        {
            let _g = trace.install();
            let node = tracing::info_span!("node", name = "origin");
            let _n = node.enter();
            let conn = tracing::info_span!("conn", peer = 7);
            let _c = conn.enter();
            tracing::info!(b = 2, a = "x\ny", "hello {}", "world");
            tracing::trace!("not recorded at the default level");
        }
        tracing::info!("not recorded: the guard is gone");
        let lines = trace.lines();
        assert_eq!(
            lines,
            vec![format!(
                "~{:>7}.000ms origin INFO  conn{{peer=7}}:{}: hello world b=2 a=x\\ny",
                0,
                module_path!()
            )]
        );
        assert_eq!(trace.hash(), {
            let mut h = Fnv64::new();
            h.write(lines[0].as_bytes());
            h.write(b"\n");
            h.finish()
        });
    }

    #[test]
    fn first_difference_finds_changed_and_missing_lines() {
        let a = vec!["x".to_owned(), "y".to_owned()];
        let b = vec!["x".to_owned(), "z".to_owned()];
        assert_eq!(first_difference(&a, &a), None);
        assert_eq!(
            first_difference(&a, &b),
            Some((1, Some("y".into()), Some("z".into())))
        );
        assert_eq!(
            first_difference(&a, &a[..1]),
            Some((1, Some("y".into()), None))
        );
    }
}
