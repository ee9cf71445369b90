//! The hash maps of the hot paths (the cache's tables and indexes, planning, the
//! controller's books, validation): std's maps with foldhash's seeded hasher instead of
//! SipHash, which was a measured share of every pass. Still randomly seeded per map, so a
//! peer choosing row UUIDs or names cannot pick colliding keys in advance.

/// `std::collections::HashMap` with foldhash.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// `std::collections::HashSet` with foldhash.
pub type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
