//! `surel::smtp::parse_command` on arbitrary lines.
//!
//! Invariants: whatever parses is well-formed (MAIL/RCPT paths pass `valid_mailbox`, EHLO/HELO
//! names are printable ASCII, ENVID/ORCPT are xtext, every borrowed field lies inside the line);
//! a line without CR/LF parses the same with a CRLF or a bare LF appended; the verb is
//! case-insensitive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surel::smtp::command::{valid_mailbox, valid_xtext};
use surel::smtp::{Command, parse_command};

/// True if `part` is a sub-slice of `line` (the parser is zero-copy).
fn inside(line: &[u8], part: &str) -> bool {
    let (l, p) = (line.as_ptr() as usize, part.as_ptr() as usize);
    part.is_empty() || (p >= l && p + part.len() <= l + line.len())
}

fn check_well_formed(line: &[u8], cmd: &Command<'_>) {
    match *cmd {
        Command::Ehlo(name) | Command::Helo(name) => {
            assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()));
            assert!(inside(line, name));
        }
        Command::Mail { path, params } => {
            assert!(path.is_empty() || valid_mailbox(path), "{path:?}");
            assert!(inside(line, path));
            if let Some(envid) = params.envid {
                assert!(envid.len() <= 100 && valid_xtext(envid));
                assert!(inside(line, envid));
            }
            if let Some(auth) = params.auth {
                assert!(!auth.is_empty() && inside(line, auth));
            }
        }
        Command::Rcpt { path, params } => {
            assert!(
                path.eq_ignore_ascii_case("postmaster") || valid_mailbox(path),
                "{path:?}"
            );
            assert!(inside(line, path));
            if let Some(orcpt) = params.orcpt {
                let (kind, addr) = orcpt.split_once(';').expect("ORCPT has a type");
                assert!(!kind.is_empty() && valid_xtext(addr) && orcpt.len() <= 500);
                assert!(inside(line, orcpt));
            }
        }
        Command::Vrfy(arg) | Command::Expn(arg) => assert!(!arg.is_empty() && inside(line, arg)),
        Command::Auth { mechanism, initial } => {
            assert!(!mechanism.is_empty() && !mechanism.contains(' '));
            assert!(inside(line, mechanism));
            if let Some(ir) = initial {
                assert!(!ir.is_empty() && !ir.contains(' ') && inside(line, ir));
            }
        }
        Command::Data
        | Command::Bdat { .. }
        | Command::Rset
        | Command::Noop
        | Command::Quit
        | Command::Help
        | Command::StartTls => {}
    }
}

fuzz_target!(|line: &[u8]| {
    let parsed = parse_command(line);
    if let Ok(cmd) = &parsed {
        check_well_formed(line, cmd);
    }
    if !line.contains(&b'\r') && !line.contains(&b'\n') {
        for ending in [&b"\r\n"[..], b"\n"] {
            let mut terminated = line.to_vec();
            terminated.extend_from_slice(ending);
            assert_eq!(parse_command(&terminated), parsed, "with {ending:?}");
        }
    }
    // Verbs are case-insensitive: flipping the case of the verb changes nothing.
    let verb_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let mut flipped = line.to_vec();
    for b in &mut flipped[..verb_len] {
        if b.is_ascii_alphabetic() {
            *b ^= 0x20;
        }
    }
    assert_eq!(parse_command(&flipped), parsed);
});
