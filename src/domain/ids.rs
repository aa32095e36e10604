/// A new random id with a prefix saying what it names (`inv_…`, `tok_…`), so an id pasted into
/// the wrong place is recognisable at a glance.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
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
