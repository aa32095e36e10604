/// A new id with a prefix saying what it names (`inv_…`, `tok_…`), so an id pasted into the wrong
/// place is recognisable at a glance. UUIDv7: ids sort by creation time, which lists and cursors
/// rely on, and the rest is random.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Fills `buf` from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS random source failing means the machine cannot make secrets at all; stopping is the
    // only safe answer.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the operating system's random source is unavailable");
    buf
}
