//! surel is MIT OR Apache-2.0: no dependency may force a copyleft licence on it. Reads the
//! resolved dependency graph (`cargo metadata`) and checks every package's SPDX expression.

use std::process::Command;

/// Licences that put no copyleft obligation on a program that links the crate.
const PERMISSIVE: &[&str] = &[
    "MIT",
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "0BSD",
    "Unlicense",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "CC0-1.0",
    "MPL-2.0",
    // A permissive data licence (notice only, no copyleft): Mozilla's root certificates in
    // webpki-root-certs, which mail-auth's resolver pulls on non-Linux targets only.
    "CDLA-Permissive-2.0",
];

/// True if `expr` can be satisfied with permissive licences only: at least one alternative of
/// every OR (written `OR` or `/`) whose AND-parts are all permissive.
fn permissive(expr: &str) -> bool {
    let expr = expr.replace('/', " OR ");
    // Parenthesised groups in crate metadata are simple `(A OR B) AND C`: check each group.
    if let Some(open) = expr.find('(') {
        let close = open + expr[open..].find(')').expect("balanced");
        let inner = permissive(&expr[open + 1..close]);
        let rest = format!(
            "{}{}{}",
            &expr[..open],
            if inner { "MIT" } else { "GPL-3.0" },
            &expr[close + 1..]
        );
        return permissive(&rest);
    }
    expr.split(" OR ").any(|alt| {
        alt.split(" AND ")
            .all(|part| PERMISSIVE.contains(&part.trim()))
    })
}

#[test]
fn expression_checker() {
    assert!(permissive("MIT OR Apache-2.0 OR LGPL-2.1-or-later"));
    assert!(permissive("(MIT OR Apache-2.0) AND Unicode-3.0"));
    assert!(permissive("Apache-2.0/MIT"));
    assert!(!permissive("AGPL-3.0-only"));
    assert!(!permissive("MIT AND GPL-2.0"));
    assert!(!permissive("(GPL-3.0 OR AGPL-3.0) AND MIT"));
}

#[test]
fn every_dependency_is_permissively_licensed() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8(out.stdout).unwrap();
    let mut checked = 0;
    let mut offending = Vec::new();
    // Each package object has "name":"…", …, "license":"…" (or null with a license file).
    for chunk in json.split("{\"name\":\"").skip(1) {
        let name = &chunk[..chunk.find('"').unwrap()];
        let Some(at) = chunk.find("\"license\":") else {
            continue;
        };
        let value = &chunk[at + 10..];
        if let Some(text) = value.strip_prefix('"') {
            let license = &text[..text.find('"').unwrap()];
            checked += 1;
            if !permissive(license) {
                offending.push(format!("{name}: {license}"));
            }
        } else if !["surel", "loadgen"].contains(&name) {
            offending.push(format!("{name}: no SPDX licence expression"));
        }
    }
    assert!(checked > 100, "only {checked} packages found");
    assert!(
        offending.is_empty(),
        "not MIT/Apache-compatible: {offending:#?}"
    );
}
