//! Pure slice arithmetic: which slices a byte range touches, how missing slices are grouped into
//! origin requests, and which cached slices eviction removes. No I/O.

/// The slices (indexes) holding bytes `start..=end` of an object, for slices of `slice` bytes.
pub fn slices_of(start: u64, end: u64, slice: u64) -> std::ops::RangeInclusive<u64> {
    (start / slice)..=(end / slice)
}

/// Bytes `start..end` (end exclusive) of slice `index` of an object of `size` bytes.
pub fn slice_bounds(index: u64, slice: u64, size: u64) -> (u64, u64) {
    let start = index * slice;
    (start, (start + slice).min(size))
}

/// Group the missing slices (ascending indexes) into runs of adjacent slices, each at most
/// `max_run` slices long: one ranged origin request per run. Returns (first index, count).
pub fn coalesce_missing(missing: &[u64], max_run: u64) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &index in missing {
        match runs.last_mut() {
            Some((first, count)) if *first + *count == index && *count < max_run => *count += 1,
            _ => runs.push((index, 1)),
        }
    }
    runs
}

/// The slices (first, last index) the speculative GET of a cold request asks for: from the slice
/// holding byte `first` to the one holding `last` (inclusive; `None`: open-ended), at most
/// `max_run` slices. The origin clamps the run to the object's size.
pub fn speculative_run(want: super::Speculation, slice: u64, max_run: u64) -> (u64, u64) {
    let first = want.first / slice;
    let cap = first + max_run.max(1) - 1;
    (first, want.last.map_or(cap, |last| (last / slice).min(cap)))
}

/// Least recently used first: the entries to evict so that `used - evicted + need <= max`.
/// `entries` are (key, bytes, last use); `None` when even an empty cache cannot hold `need`.
pub fn lru_victims<K: Clone>(entries: &[(K, u64, u64)], used: u64, need: u64, max: u64) -> Option<Vec<K>> {
    if need > max {
        return None;
    }
    let mut order: Vec<&(K, u64, u64)> = entries.iter().collect();
    order.sort_by_key(|(_, _, tick)| *tick);
    let mut left = used;
    let mut victims = Vec::new();
    for (key, bytes, _) in order {
        if left + need <= max {
            break;
        }
        victims.push(key.clone());
        left -= bytes;
    }
    (left + need <= max).then_some(victims)
}

/// A slice file's name: object key, index, length and CRC32C (what the index is rebuilt from).
pub fn slice_name(object: &str, index: u64, length: u64, crc: u32) -> String {
    format!("{object}-{index}-{length}-{crc:08x}")
}

/// The fields of a slice file's name, or `None` for anything else (temporary files included).
pub fn parse_slice_name(name: &str) -> Option<(String, u64, u64, u32)> {
    let mut parts = name.split('-');
    let object = parts.next()?;
    let index = parts.next()?.parse().ok()?;
    let length = parts.next()?.parse().ok()?;
    let crc = u32::from_str_radix(parts.next()?, 16).ok()?;
    if parts.next().is_some() || object.len() != 32 || !object.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((object.to_string(), index, length, crc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_of_ranges() {
        let mib = 1 << 20;
        assert_eq!(slices_of(0, 0, mib), 0..=0);
        assert_eq!(slices_of(mib - 1, mib, mib), 0..=1);
        assert_eq!(slices_of(5 * mib + 3, 7 * mib - 1, mib), 5..=6);
        assert_eq!(slice_bounds(2, mib, 2 * mib + 10), (2 * mib, 2 * mib + 10));
        assert_eq!(slice_bounds(0, mib, 10), (0, 10));
    }

    #[test]
    fn coalescing_groups_adjacent_slices() {
        assert_eq!(coalesce_missing(&[], 8), vec![]);
        assert_eq!(coalesce_missing(&[1, 2, 3, 5, 6, 9], 8), vec![(1, 3), (5, 2), (9, 1)]);
        assert_eq!(coalesce_missing(&[0, 1, 2, 3, 4], 2), vec![(0, 2), (2, 2), (4, 1)]);
    }

    #[test]
    fn speculative_runs_cover_the_first_byte() {
        use crate::cache::Speculation;
        let mib = 1 << 20;
        let want = |first, last| Speculation { first, last };
        assert_eq!(speculative_run(want(0, None), mib, 8), (0, 7));
        assert_eq!(speculative_run(want(5 * mib + 3, Some(5 * mib + 10)), mib, 8), (5, 5));
        assert_eq!(speculative_run(want(5 * mib + 3, Some(6 * mib)), mib, 8), (5, 6));
        assert_eq!(speculative_run(want(mib - 1, Some(100 * mib)), mib, 8), (0, 7));
        assert_eq!(speculative_run(want(3 * mib, None), mib, 0), (3, 3));
    }

    #[test]
    fn eviction_takes_least_recently_used_first() {
        let entries = vec![("a", 10, 5), ("b", 10, 1), ("c", 10, 3)];
        assert_eq!(lru_victims(&entries, 30, 10, 40), Some(vec![]));
        assert_eq!(lru_victims(&entries, 30, 10, 30), Some(vec!["b"]));
        assert_eq!(lru_victims(&entries, 30, 25, 30), Some(vec!["b", "c", "a"]));
        assert_eq!(lru_victims(&entries, 30, 31, 30), None);
    }

    #[test]
    fn names_round_trip() {
        let object = "0123456789abcdef0123456789abcdef";
        let name = slice_name(object, 7, 1 << 20, 0xdead_beef);
        assert_eq!(parse_slice_name(&name), Some((object.to_string(), 7, 1 << 20, 0xdead_beef)));
        assert_eq!(parse_slice_name(".tmp-123"), None);
        assert_eq!(parse_slice_name("xyz-1-2-3"), None);
    }
}
