//! Documents whose `sh` blocks tests run literally: each block starts with a `# Title` comment line.

use std::collections::BTreeMap;

/// The document's `sh` blocks by title (the first line's `# Title`), each with its lines as written.
pub fn sh_blocks(doc: &str) -> BTreeMap<String, String> {
    let mut blocks = BTreeMap::new();
    let mut current: Option<Vec<&str>> = None;
    for line in doc.lines() {
        match current.as_mut() {
            None if line.trim() == "```sh" => current = Some(Vec::new()),
            None => {}
            Some(lines) if line.trim() == "```" => {
                let title = lines
                    .first()
                    .and_then(|l| l.strip_prefix("# "))
                    .unwrap_or_else(|| panic!("an sh block must start with a `# Title` line: {lines:?}"))
                    .to_string();
                let body = lines.join("\n") + "\n";
                assert!(
                    blocks.insert(title.clone(), body).is_none(),
                    "two blocks titled {title}"
                );
                current = None;
            }
            Some(lines) => lines.push(line),
        }
    }
    assert!(current.is_none(), "an unterminated sh block");
    blocks
}

/// The one block whose title starts with `title`: its full title and its script.
pub fn block<'a>(blocks: &'a BTreeMap<String, String>, title: &str) -> (&'a String, &'a String) {
    let matching: Vec<(&String, &String)> = blocks.iter().filter(|(t, _)| t.starts_with(title)).collect();
    assert_eq!(
        matching.len(),
        1,
        "one block titled {title}…: {:?}",
        blocks.keys()
    );
    matching[0]
}
