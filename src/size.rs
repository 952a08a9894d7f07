//! Sizes as people read them in `kubectl get` and in messages.

/// `225.2 KiB`, `1.5 GiB`, `12 B`: binary units, as `du -h` and restic print them.
pub fn human(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_du_prints_them() {
        assert_eq!(human(230_631), "225.2 KiB");
        assert_eq!(human(12), "12 B");
        assert_eq!(human(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    }
}
