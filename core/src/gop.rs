//! `Gop`: what a stream keeps of its current group of pictures — the frames (or
//! muxed chunks) since its latest video keyframe — so that a new viewer starts at
//! once, at a keyframe.
//!
//! Owns: starting a GOP at a keyframe, dropping it at a discontinuity, and its memory
//! bound: a GOP past [`MAX_GOP_BYTES`] (a source that stops sending keyframes, or a
//! very long GOP at a high bitrate) is dropped, and nothing is kept until the next
//! keyframe; new viewers then wait for that keyframe. Must not: decide what a
//! keyframe is (the caller says) or hold anything but the current GOP.

/// The most a stream keeps of its current GOP, per copy (frames in the hub, muxed
/// chunks for MPEG-TS viewers).
pub const MAX_GOP_BYTES: usize = 32 << 20;

#[derive(Debug, Clone)]
pub struct Gop<T> {
    items: Vec<T>,
    bytes: usize,
    /// A keyframe started the GOP in `items` and it is still within the bound.
    open: bool,
}

impl<T> Default for Gop<T> {
    fn default() -> Self {
        Gop {
            items: Vec::new(),
            bytes: 0,
            open: false,
        }
    }
}

impl<T> Gop<T> {
    /// Adds the next item of the stream, of `bytes` bytes: a keyframe starts a new
    /// GOP; anything else extends the open one (or is not kept, when there is none).
    pub fn push(&mut self, item: T, bytes: usize, keyframe: bool) {
        if keyframe {
            self.clear();
            self.open = true;
        }
        if !self.open {
            return;
        }
        if self.bytes.saturating_add(bytes) > MAX_GOP_BYTES {
            self.clear();
            return;
        }
        self.bytes += bytes;
        self.items.push(item);
    }

    /// Drops the GOP (a discontinuity): nothing is kept until the next keyframe.
    pub fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
        self.open = false;
    }

    /// The GOP, oldest first; empty when there is no whole GOP to start with.
    pub fn items(&self) -> &[T] {
        &self.items
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_a_keyframe_and_is_dropped_past_its_bound() {
        let mut g = Gop::default();
        g.push(1, 10, false);
        assert!(g.is_empty(), "nothing before the first keyframe");
        g.push(2, 10, true);
        g.push(3, 10, false);
        assert_eq!(g.items(), &[2, 3]);
        g.push(4, 10, true);
        assert_eq!(g.items(), &[4]);
        g.clear();
        g.push(5, 10, false);
        assert!(
            g.is_empty(),
            "after a discontinuity, nothing until a keyframe"
        );
        g.push(6, MAX_GOP_BYTES - 5, true);
        g.push(7, 5, false);
        assert_eq!(g.items(), &[6, 7], "exactly at the bound");
        g.push(8, 1, false);
        assert!(g.is_empty(), "past the bound the GOP is dropped");
        g.push(9, 1, false);
        assert!(g.is_empty(), "and nothing is kept until the next keyframe");
        g.push(10, 1, true);
        assert_eq!(g.items(), &[10]);
    }
}
