//! Honest memory accounting: what the projection holds, heap included, counted from capacities
//! (not lengths) so that growth slack and hash table buckets are paid for.

/// The bytes a `std::collections::HashMap<K, V>` with this `capacity()` allocates: hashbrown
/// keeps a power-of-two number of buckets at most 7/8 full, one `(K, V)` and one control byte per
/// bucket, plus one group (16 bytes) of trailing control bytes. An estimate of the standard
/// library's layout, close to the byte for large tables.
#[must_use]
pub fn hash_map_bytes<K, V>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets =
        if capacity < 8 { (capacity + 1).next_power_of_two() } else { (capacity * 8 / 7).next_power_of_two() };
    buckets * (std::mem::size_of::<(K, V)>() + 1) + 16
}

/// What a [`crate::Projector`] holds in memory, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUsage {
    /// Subjects with personalization features.
    pub subjects: usize,
    /// The pseudonym → slot hash table.
    pub index_bytes: usize,
    /// The slots without their ledger headers: each subject's fixed-size [`crate::FeatureView`]
    /// and consent mark, with the vector's spare capacity and the free list.
    pub view_bytes: usize,
    /// Each subject's item interaction ledger (what item statistics are made of): its header in
    /// the slot and its entries on the heap.
    pub ledger_bytes: usize,
    /// Category, item, location and segment tables.
    pub vocabulary_bytes: usize,
    /// Catalog items and per-item statistics.
    pub catalog_bytes: usize,
}

impl MemoryUsage {
    /// Bytes per subject of the serving features: index and views.
    #[must_use]
    pub fn serving_bytes_per_subject(&self) -> f64 {
        per(self.index_bytes + self.view_bytes, self.subjects)
    }

    /// Bytes per subject of everything the projector holds, catalog and vocabularies included.
    #[must_use]
    pub fn total_bytes_per_subject(&self) -> f64 {
        per(self.total_bytes(), self.subjects)
    }

    /// Every byte counted.
    #[must_use]
    pub fn total_bytes(&self) -> usize {
        self.index_bytes + self.view_bytes + self.ledger_bytes + self.vocabulary_bytes + self.catalog_bytes
    }
}

#[allow(clippy::cast_precision_loss)]
fn per(bytes: usize, subjects: usize) -> f64 {
    if subjects == 0 {
        0.0
    } else {
        bytes as f64 / subjects as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_map_estimate_matches_capacity_rules() {
        let mut m = std::collections::HashMap::<u64, u64>::new();
        assert_eq!(hash_map_bytes::<u64, u64>(m.capacity()), 0);
        m.extend((0..1000).map(|i| (i, i)));
        // 1,000 entries do not fit 1,024 buckets at 7/8 load (896), so the table has 2,048.
        assert_eq!(hash_map_bytes::<u64, u64>(m.capacity()), 2048 * 17 + 16);
    }
}
