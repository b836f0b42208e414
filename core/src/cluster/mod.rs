//! Cluster protocols: auth and wire codecs (being written).
