//! The DVR index journal: an append-only file of index changes, replayed at start.
//!
//! Layout, all integers big-endian:
//! ```text
//! header:  "TDVRJNL" version:u8=1                               (8 bytes)
//! record:  len:u32 crc:u32 payload[len]
//!          crc = CRC-32/MPEG-2 over the 4 len bytes and the payload
//! payload: kind:u8=1 (Add)    utc_start_ms:u64 duration_ms:u32 bytes:u64
//!                             first_epoch:u64 first_seq:u64 last_epoch:u64 last_seq:u64
//!          kind:u8=2 (Remove) utc_start_ms:u64
//! ```
//!
//! A record is appended (and fsynced by the store) after the change it describes is
//! durable: Add after the segment file was renamed into place, Remove after the file
//! was deleted. A crash may leave a torn last record; replay stops at the first
//! record that is short, too long or fails its CRC, and reports where ([`Tail`]), so
//! the caller rewrites the journal before appending again. The same happens if an
//! append failed half way (a full disk).
//!
//! Compaction: the journal is rewritten as a snapshot (header + one Add per live
//! entry) when it holds more than twice as many records as live entries plus
//! [`COMPACT_SLACK`] — so rewriting costs O(1) amortised per record — and whenever its
//! tail is known to be bad. A rewrite is atomic (temporary file, fsync, rename).
//!
//! Owns: the format, replay, snapshots, the compaction rule. Must not: do I/O.

use std::collections::{BTreeMap, VecDeque};

use bytes::BufMut;

use super::index::IndexEntry;
use crate::media::{Position, UtcMs};
use crate::mux::crc32::crc32_mpeg2;

pub const MAGIC: &[u8; 7] = b"TDVRJNL";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 8;
/// Bytes before a record's payload (len and crc).
pub const RECORD_HEADER_LEN: usize = 8;
/// Longest payload of any record kind; a longer length field is a torn record.
pub const MAX_PAYLOAD: usize = 64;
/// Records a journal may hold beyond twice its live entries before compaction.
pub const COMPACT_SLACK: usize = 1024;

const KIND_ADD: u8 = 1;
const KIND_REMOVE: u8 = 2;
const ADD_LEN: usize = 1 + 8 + 4 + 8 + 4 * 8;
const REMOVE_LEN: usize = 1 + 8;

/// One change of the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Add(IndexEntry),
    Remove { utc_start_ms: UtcMs },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("not a Tern DVR index journal (bad magic bytes)")]
    NotAJournal,
    #[error("DVR index journal version {found} is not supported (this build reads version {supported}); it was written by a newer tern")]
    UnsupportedVersion { found: u8, supported: u8 },
}

/// Where replay stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Every byte was part of a valid record.
    Clean,
    /// The bytes from `at` on are not a valid record (a torn append, or a failed
    /// one); they were ignored.
    Torn { at: usize, reason: &'static str },
}

/// A replayed journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replay {
    /// The live entries, sorted by UTC start.
    pub entries: Vec<IndexEntry>,
    /// Valid records read (Add and Remove).
    pub records: usize,
    /// Length of the valid prefix (header and whole records).
    pub valid_len: usize,
    pub tail: Tail,
}

/// The journal header.
pub fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..7].copy_from_slice(MAGIC);
    h[7] = VERSION;
    h
}

/// Appends one framed record to `out`.
pub fn encode_record_into(rec: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    let len = match rec {
        Record::Add(_) => ADD_LEN,
        Record::Remove { .. } => REMOVE_LEN,
    };
    out.put_u32(len as u32);
    out.put_u32(0); // crc, filled in below
    match rec {
        Record::Add(e) => {
            out.put_u8(KIND_ADD);
            out.put_u64(e.utc_start_ms);
            out.put_u32(e.duration_ms);
            out.put_u64(e.bytes);
            out.put_u64(e.first_pos.epoch);
            out.put_u64(e.first_pos.seq);
            out.put_u64(e.last_pos.epoch);
            out.put_u64(e.last_pos.seq);
        }
        Record::Remove { utc_start_ms } => {
            out.put_u8(KIND_REMOVE);
            out.put_u64(*utc_start_ms);
        }
    }
    let mut crc_input = Vec::with_capacity(4 + len);
    crc_input.extend_from_slice(&out[start..start + 4]);
    crc_input.extend_from_slice(&out[start + RECORD_HEADER_LEN..]);
    let crc = crc32_mpeg2(&crc_input);
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// One framed record.
pub fn encode_record(rec: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + ADD_LEN);
    encode_record_into(rec, &mut out);
    out
}

/// A whole journal holding exactly `entries` (what a rewrite writes).
pub fn snapshot<'a>(entries: impl ExactSizeIterator<Item = &'a IndexEntry>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + entries.len() * (RECORD_HEADER_LEN + ADD_LEN));
    out.extend_from_slice(&header());
    for e in entries {
        encode_record_into(&Record::Add(*e), &mut out);
    }
    out
}

/// Whether a journal of `records` records describing `live` entries should be
/// rewritten as a snapshot.
pub fn needs_compaction(records: usize, live: usize) -> bool {
    records > live.saturating_mul(2).saturating_add(COMPACT_SLACK)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes the record at the start of `buf`; `Err` says why it is not one.
fn decode_one(buf: &[u8]) -> Result<(Record, usize), &'static str> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err("short record header");
    }
    let len = be_u32(buf) as usize;
    if len == 0 || len > MAX_PAYLOAD {
        return Err("bad record length");
    }
    if buf.len() < RECORD_HEADER_LEN + len {
        return Err("short record");
    }
    let payload = &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    let mut crc_input = [0u8; 4 + MAX_PAYLOAD];
    crc_input[..4].copy_from_slice(&buf[..4]);
    crc_input[4..4 + len].copy_from_slice(payload);
    if crc32_mpeg2(&crc_input[..4 + len]) != be_u32(&buf[4..]) {
        return Err("CRC mismatch");
    }
    let p = &payload[1..];
    let rec = match (payload[0], len) {
        (KIND_ADD, ADD_LEN) => Record::Add(IndexEntry {
            utc_start_ms: be_u64(p),
            duration_ms: be_u32(&p[8..]),
            bytes: be_u64(&p[12..]),
            first_pos: Position {
                epoch: be_u64(&p[20..]),
                seq: be_u64(&p[28..]),
            },
            last_pos: Position {
                epoch: be_u64(&p[36..]),
                seq: be_u64(&p[44..]),
            },
        }),
        (KIND_REMOVE, REMOVE_LEN) => Record::Remove {
            utc_start_ms: be_u64(p),
        },
        _ => return Err("unknown record kind"),
    };
    Ok((rec, RECORD_HEADER_LEN + len))
}

/// Reads the header and the valid records of `buf`, calling `f` on each; returns
/// the record count, the valid length and the tail.
pub fn read_records(
    buf: &[u8],
    mut f: impl FnMut(Record),
) -> Result<(usize, usize, Tail), JournalError> {
    if buf.len() < HEADER_LEN {
        // A header cut short by a crash right after the file was created.
        return if header().starts_with(buf) {
            Ok((
                0,
                0,
                if buf.is_empty() {
                    Tail::Clean
                } else {
                    Tail::Torn {
                        at: 0,
                        reason: "short header",
                    }
                },
            ))
        } else {
            Err(JournalError::NotAJournal)
        };
    }
    if &buf[..7] != MAGIC {
        return Err(JournalError::NotAJournal);
    }
    if buf[7] != VERSION {
        return Err(JournalError::UnsupportedVersion {
            found: buf[7],
            supported: VERSION,
        });
    }
    let mut pos = HEADER_LEN;
    let mut records = 0;
    while pos < buf.len() {
        match decode_one(&buf[pos..]) {
            Ok((rec, n)) => {
                f(rec);
                records += 1;
                pos += n;
            }
            Err(reason) => return Ok((records, pos, Tail::Torn { at: pos, reason })),
        }
    }
    Ok((records, pos, Tail::Clean))
}

/// The live entries while replaying: a sorted deque while the journal only appends
/// newer entries and removes the oldest (what recording and retention write, and
/// what a snapshot is), a map once it does anything else.
enum Live {
    Ordered(VecDeque<IndexEntry>),
    Any(BTreeMap<UtcMs, IndexEntry>),
}

impl Live {
    fn to_map(q: &mut VecDeque<IndexEntry>) -> BTreeMap<UtcMs, IndexEntry> {
        q.drain(..).map(|e| (e.utc_start_ms, e)).collect()
    }

    fn apply(&mut self, rec: Record) {
        match (&mut *self, rec) {
            (Live::Ordered(q), Record::Add(e)) => {
                if q.back().is_none_or(|b| b.utc_start_ms < e.utc_start_ms) {
                    q.push_back(e);
                } else {
                    let mut m = Self::to_map(q);
                    m.insert(e.utc_start_ms, e);
                    *self = Live::Any(m);
                }
            }
            (Live::Ordered(q), Record::Remove { utc_start_ms }) => {
                if q.front().is_some_and(|f| f.utc_start_ms == utc_start_ms) {
                    q.pop_front();
                } else if q
                    .binary_search_by_key(&utc_start_ms, |e| e.utc_start_ms)
                    .is_ok()
                {
                    let mut m = Self::to_map(q);
                    m.remove(&utc_start_ms);
                    *self = Live::Any(m);
                }
            }
            (Live::Any(m), Record::Add(e)) => {
                m.insert(e.utc_start_ms, e);
            }
            (Live::Any(m), Record::Remove { utc_start_ms }) => {
                m.remove(&utc_start_ms);
            }
        }
    }

    fn into_sorted(self) -> Vec<IndexEntry> {
        match self {
            Live::Ordered(q) => q.into(),
            Live::Any(m) => m.into_values().collect(),
        }
    }
}

/// Replays a journal into the live entries. An empty buffer is an empty journal.
pub fn replay(buf: &[u8]) -> Result<Replay, JournalError> {
    let mut live = Live::Ordered(VecDeque::new());
    let (records, valid_len, tail) = read_records(buf, |rec| live.apply(rec))?;
    Ok(Replay {
        entries: live.into_sorted(),
        records,
        valid_len,
        tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> IndexEntry {
        IndexEntry {
            utc_start_ms: 1_764_000_000_000 + i * 2000,
            duration_ms: 2000,
            bytes: 10_000 + i,
            first_pos: Position {
                epoch: 3,
                seq: i * 50,
            },
            last_pos: Position {
                epoch: 3,
                seq: i * 50 + 49,
            },
        }
    }

    fn journal(recs: &[Record]) -> Vec<u8> {
        let mut out = header().to_vec();
        for r in recs {
            encode_record_into(r, &mut out);
        }
        out
    }

    #[test]
    fn roundtrip_adds_and_removes() {
        let recs = [
            Record::Add(entry(0)),
            Record::Add(entry(1)),
            Record::Add(entry(2)),
            Record::Remove {
                utc_start_ms: entry(0).utc_start_ms,
            },
            Record::Remove { utc_start_ms: 5 }, // removing a missing entry is harmless
        ];
        let buf = journal(&recs);
        let mut seen = Vec::new();
        let (n, valid, tail) = read_records(&buf, |r| seen.push(r)).unwrap();
        assert_eq!((n, valid, tail), (5, buf.len(), Tail::Clean));
        assert_eq!(seen, recs);
        let r = replay(&buf).unwrap();
        assert_eq!(r.entries, vec![entry(1), entry(2)]);
        assert_eq!(r.records, 5);
    }

    #[test]
    fn replay_out_of_order_and_middle_removes() {
        let recs = [
            Record::Add(entry(2)),
            Record::Add(entry(0)), // older than the newest: map mode
            Record::Add(entry(3)),
            Record::Remove {
                utc_start_ms: entry(2).utc_start_ms,
            },
            Record::Add(entry(1)),
            Record::Add(entry(1)), // again: the last wins, no duplicate
        ];
        assert_eq!(
            replay(&journal(&recs)).unwrap().entries,
            vec![entry(0), entry(1), entry(3)]
        );
        // Ordered mode: removing from the middle, and removing a missing entry.
        let recs = [
            Record::Add(entry(0)),
            Record::Add(entry(1)),
            Record::Add(entry(2)),
            Record::Remove { utc_start_ms: 1 },
            Record::Remove {
                utc_start_ms: entry(1).utc_start_ms,
            },
            Record::Remove {
                utc_start_ms: entry(0).utc_start_ms,
            },
        ];
        assert_eq!(replay(&journal(&recs)).unwrap().entries, vec![entry(2)]);
    }

    #[test]
    fn golden_bytes() {
        let mut e = entry(0);
        e.utc_start_ms = 0x0102;
        let rec = encode_record(&Record::Add(e));
        assert_eq!(rec.len(), RECORD_HEADER_LEN + ADD_LEN);
        assert_eq!(&rec[..4], &[0, 0, 0, 53]);
        assert_eq!(rec[8], KIND_ADD);
        assert_eq!(&rec[9..17], &[0, 0, 0, 0, 0, 0, 1, 2]);
        let rm = encode_record(&Record::Remove { utc_start_ms: 7 });
        assert_eq!(&rm[..4], &[0, 0, 0, 9]);
        assert_eq!(&rm[8..], &[2, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(&header(), b"TDVRJNL\x01");
    }

    #[test]
    fn empty_and_fresh_journals() {
        let r = replay(&[]).unwrap();
        assert_eq!((r.entries.len(), r.records, r.tail), (0, 0, Tail::Clean));
        let r = replay(&header()).unwrap();
        assert_eq!(
            (r.entries.len(), r.valid_len, r.tail),
            (0, HEADER_LEN, Tail::Clean)
        );
        for cut in 1..HEADER_LEN {
            let r = replay(&header()[..cut]).unwrap();
            assert!(matches!(r.tail, Tail::Torn { at: 0, .. }), "{cut}");
        }
    }

    #[test]
    fn foreign_and_newer_files_are_errors() {
        assert_eq!(replay(b"hello world"), Err(JournalError::NotAJournal));
        assert!(matches!(
            replay(b"TD").map(|r| r.tail),
            Ok(Tail::Torn { at: 0, .. })
        ));
        assert_eq!(replay(b"XD"), Err(JournalError::NotAJournal));
        let mut h = header();
        h[7] = 9;
        assert_eq!(
            replay(&h),
            Err(JournalError::UnsupportedVersion {
                found: 9,
                supported: 1
            })
        );
    }

    /// Cutting the journal at every byte of its last two records never loses a
    /// whole record before the cut and never yields a record that was not written.
    #[test]
    fn truncation_at_every_byte_of_the_tail() {
        let recs: Vec<Record> = (0..6)
            .map(|i| Record::Add(entry(i)))
            .chain([Record::Remove {
                utc_start_ms: entry(0).utc_start_ms,
            }])
            .collect();
        let full = journal(&recs);
        let mut boundaries = vec![HEADER_LEN];
        for r in &recs {
            let last = *boundaries.last().unwrap_or(&0);
            boundaries.push(last + encode_record(r).len());
        }
        let tail_start = boundaries[boundaries.len() - 3];
        for cut in tail_start..=full.len() {
            let mut seen = Vec::new();
            let (n, valid, tail) = read_records(&full[..cut], |r| seen.push(r)).unwrap();
            let whole = boundaries.iter().filter(|b| **b <= cut).count() - 1;
            assert_eq!(n, whole, "cut {cut}");
            assert_eq!(seen, recs[..whole], "cut {cut}");
            assert_eq!(valid, boundaries[whole], "cut {cut}");
            assert_eq!(tail == Tail::Clean, valid == cut, "cut {cut}");
        }
    }

    /// Garbage after valid records (a failed append, or zeros from a crash on a
    /// filesystem that extended the file before writing it) is a torn tail.
    #[test]
    fn garbage_and_zeros_after_records_are_torn() {
        let recs = [Record::Add(entry(0)), Record::Add(entry(1))];
        let good = journal(&recs);
        for junk in [
            vec![0u8; 100],
            vec![0xff; 3],
            vec![0, 0, 0, 9, 1, 2, 3, 4, 5],
        ] {
            let mut buf = good.clone();
            buf.extend_from_slice(&junk);
            let r = replay(&buf).unwrap();
            assert_eq!(r.entries, vec![entry(0), entry(1)]);
            assert!(matches!(r.tail, Tail::Torn { at, .. } if at == good.len()));
        }
        // A flipped bit inside the last record: it is dropped, the first survives.
        let mut buf = good.clone();
        let n = buf.len();
        buf[n - 3] ^= 0x10;
        let r = replay(&buf).unwrap();
        assert_eq!(r.entries, vec![entry(0)]);
        assert!(matches!(
            r.tail,
            Tail::Torn {
                reason: "CRC mismatch",
                ..
            }
        ));
    }

    /// The journal's side of the crash test (node's `dvr::crash_tests` runs the
    /// whole store): a journal cut at every byte (the unsynced tail of appends lost),
    /// or with that tail read back as zeros or as garbage, replays to exactly its
    /// whole records; the recovery (cut back to `valid_len`, append) then replays to
    /// those records plus the new one, with a clean tail.
    #[test]
    fn crash_at_every_byte_then_recovery_append() {
        let recs: Vec<Record> = (0..5)
            .map(|i| Record::Add(entry(i)))
            .chain([
                Record::Remove {
                    utc_start_ms: entry(0).utc_start_ms,
                },
                Record::Add(entry(5)),
                Record::Remove {
                    utc_start_ms: entry(1).utc_start_ms,
                },
            ])
            .collect();
        let full = journal(&recs);
        let mut boundaries = vec![HEADER_LEN];
        for r in &recs {
            let last = *boundaries.last().unwrap_or(&0);
            boundaries.push(last + encode_record(r).len());
        }
        let expect = |recs: &[Record]| {
            let mut m = BTreeMap::new();
            for r in recs {
                match r {
                    Record::Add(e) => {
                        m.insert(e.utc_start_ms, *e);
                    }
                    Record::Remove { utc_start_ms } => {
                        m.remove(utc_start_ms);
                    }
                }
            }
            m.into_values().collect::<Vec<_>>()
        };
        let next = Record::Add(entry(9));
        let mut checked = 0;
        for cut in HEADER_LEN..=full.len() {
            let lost = full.len() - cut;
            for fill in [None, Some(0u8), Some(0xff)] {
                let mut buf = full[..cut].to_vec();
                if let Some(b) = fill {
                    buf.resize(full.len(), b);
                }
                // A fill byte can happen to restore the lost bytes (a record ending in
                // zeros): what counts is how much of the journal is still as written.
                let same = buf.iter().zip(&full).take_while(|(a, b)| a == b).count();
                let whole = boundaries.iter().filter(|b| **b <= same).count() - 1;
                let r = replay(&buf).unwrap();
                let what = format!("cut {cut}, fill {fill:?}");
                assert_eq!(r.entries, expect(&recs[..whole]), "{what}");
                assert_eq!(r.records, whole, "{what}");
                assert_eq!(r.valid_len, boundaries[whole], "{what}");
                assert_eq!(r.tail == Tail::Clean, r.valid_len == buf.len(), "{what}");
                if lost == 0 {
                    assert_eq!(r.tail, Tail::Clean, "{what}");
                }
                let mut again = buf[..r.valid_len].to_vec();
                encode_record_into(&next, &mut again);
                let r2 = replay(&again).unwrap();
                let mut want = recs[..whole].to_vec();
                want.push(next);
                assert_eq!(r2.entries, expect(&want), "{what}, then an append");
                assert_eq!(r2.tail, Tail::Clean, "{what}, then an append");
                checked += 1;
            }
        }
        assert!(checked > 3 * (full.len() - HEADER_LEN));
    }

    #[test]
    fn snapshot_replays_to_the_same_entries() {
        let entries: Vec<IndexEntry> = (0..100).map(entry).collect();
        let snap = snapshot(entries.iter());
        let r = replay(&snap).unwrap();
        assert_eq!(r.entries, entries);
        assert_eq!(r.tail, Tail::Clean);
        assert_eq!(r.records, 100);
    }

    #[test]
    fn compaction_rule() {
        assert!(!needs_compaction(0, 0));
        assert!(!needs_compaction(COMPACT_SLACK, 0));
        assert!(needs_compaction(COMPACT_SLACK + 1, 0));
        assert!(!needs_compaction(2 * 1000 + COMPACT_SLACK, 1000));
        assert!(needs_compaction(2 * 1000 + COMPACT_SLACK + 1, 1000));
    }
}
