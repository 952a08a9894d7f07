//! How a restic snapshot id is shown to people: its first 8 characters, as restic itself prints them.

/// The first 8 characters of `id` (all of it when shorter): enough to tell snapshots apart in a status
/// line or an Event, and what `restic snapshots` shows.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::short_id;

    #[test]
    fn a_snapshot_id_is_shown_by_its_first_eight_characters() {
        assert_eq!(short_id("4f42669d8c2f0000"), "4f42669d");
        assert_eq!(short_id("4f42"), "4f42");
        assert_eq!(short_id(""), "");
    }
}
