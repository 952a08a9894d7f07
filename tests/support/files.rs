//! Directory trees compared as a user compares a restore with its original.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Every entry below `root`: relative path, kind, mode and content (or link target).
pub fn tree(root: &Path) -> Vec<(String, String, u32, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let relative = path.strip_prefix(root).expect("prefix").display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                entries.push((
                    relative,
                    "link".into(),
                    0,
                    target.display().to_string().into_bytes(),
                ));
            } else if meta.is_dir() {
                entries.push((relative, "dir".into(), mode, Vec::new()));
                stack.push(path);
            } else {
                entries.push((relative, "file".into(), mode, std::fs::read(&path).expect("read")));
            }
        }
    }
    entries.sort();
    entries
}
