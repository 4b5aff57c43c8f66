//! SQL only through bound parameters: every statement in this crate is a string literal,
//! or a `format!` that splices in only named constants (column lists, a fixed WHERE
//! clause: `{KEY_COLUMNS}`), never a runtime value. This test reads the crate's sources and
//! fails on any other `format!` handed to sqlx (`AssertSqlSafe`), so a value spliced into
//! SQL cannot slip in unnoticed.

use std::path::{Path, PathBuf};

/// The `.rs` files under `dir`, in every subdirectory.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn sql_is_built_only_from_literals_and_named_constants() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for path in sources(&src) {
        let name = path.strip_prefix(&src).unwrap().display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices("AssertSqlSafe(") {
            checked += 1;
            let rest = &text[at + "AssertSqlSafe(".len()..];
            let rest = rest.trim_start();
            if !rest.starts_with("format!(") {
                // A &'static str constant or literal.
                continue;
            }
            // The format string: up to the closing quote of the first literal (literals
            // split over lines with `\` continue it).
            let literal_start = rest.find('"').expect("format! has a literal") + 1;
            let literal_end =
                literal_start + rest[literal_start..].find("\"").expect("the literal ends");
            let literal = &rest[literal_start..literal_end];
            let after = rest[literal_end + 1..].trim_start();
            assert!(
                after.starts_with(')'),
                "{name}: format! for SQL with arguments after the literal: {}",
                &rest[..literal_end + 40.min(rest.len() - literal_end)]
            );
            for (i, _) in literal.match_indices('{') {
                let inner = &literal[i + 1..];
                let close = inner.find('}').expect("placeholder closes");
                let ident = &inner[..close];
                assert!(
                    !ident.is_empty()
                        && ident
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()),
                    "{name}: SQL splices in '{{{ident}}}', which is not a named constant: bind it \
                     as a parameter instead"
                );
            }
        }
    }
    assert!(checked > 0, "no SQL found under {}", src.display());
}
