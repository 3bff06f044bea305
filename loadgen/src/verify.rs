//! `--verify`: fetch every delivered message back over IMAP or POP3 and compare it byte for
//! byte (from the first header loadgen wrote, `X-Loadgen-Id:`, to the end).

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::client::{imap, pop3};
use crate::message::{Generator, rcpt_users, user_name};
use crate::runner::{FetchWork, Tls, imap_session, pop3_session};
use crate::stats::VerifyReport;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Imap,
    Imaps,
    Pop3,
    Pop3s,
}

/// Parse `imap://HOST:PORT` (also imaps, pop3, pop3s; the port defaults per scheme).
pub fn parse_via(url: &str) -> Result<(Via, SocketAddr), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("bad --verify-via {url:?}: expected SCHEME://HOST:PORT"))?;
    let (via, port) = match scheme {
        "imap" => (Via::Imap, 143),
        "imaps" => (Via::Imaps, 993),
        "pop3" => (Via::Pop3, 110),
        "pop3s" => (Via::Pop3s, 995),
        _ => {
            return Err(format!(
                "bad --verify-via scheme {scheme:?} (imap|imaps|pop3|pop3s)"
            ));
        }
    };
    let rest = rest.trim_end_matches('/');
    let hp = if rest
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        rest.to_string()
    } else {
        format!("{rest}:{port}")
    };
    let addr = hp
        .to_socket_addrs()
        .map_err(|e| format!("{hp}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hp}: no address"))?;
    Ok((via, addr))
}

/// Find where our own headers start in a fetched message (server-added trace headers come first).
pub fn our_part(fetched: &[u8]) -> Option<&[u8]> {
    const H: &[u8] = b"X-Loadgen-Id: ";
    if fetched.starts_with(H) {
        return Some(fetched);
    }
    let p = memchr::memmem::find(fetched, b"\nX-Loadgen-Id: ")?;
    Some(&fetched[p + 1..])
}

/// The X-Loadgen-Id value (`run-n`) at the start of `ours`.
pub fn loadgen_id(ours: &[u8]) -> Option<(&str, u64)> {
    let v = ours.strip_prefix(b"X-Loadgen-Id: ")?;
    let end = memchr::memchr(b'\r', v)?;
    let v = std::str::from_utf8(&v[..end]).ok()?;
    let (run, n) = v.rsplit_once('-')?;
    Some((run, n.parse().ok()?))
}

/// The address of our `From: Load Generator <...>` line.
fn sent_from(ours: &[u8]) -> Option<&str> {
    const H: &[u8] = b"\r\nFrom: Load Generator <";
    let start = memchr::memmem::find(ours, H)? + H.len();
    let end = start + memchr::memchr(b'>', &ours[start..])?;
    std::str::from_utf8(&ours[start..end]).ok()
}

/// Verification state for one account.
#[derive(Default)]
struct Seen {
    /// message number -> (copies found, copies corrupted)
    by_n: HashMap<u64, (u64, u64)>,
    foreign: u64,
}

fn examine(
    g: &Generator,
    rcpts: u32,
    users: u64,
    pattern: &str,
    msg: &[u8],
    seen: &mut Seen,
    examples: &mut Vec<String>,
) {
    let Some(ours) = our_part(msg) else {
        seen.foreign += 1;
        return;
    };
    let Some((run, n)) = loadgen_id(ours) else {
        seen.foreign += 1;
        return;
    };
    if run != g.run_id {
        seen.foreign += 1;
        return;
    }
    let to: Vec<String> = rcpt_users(n, rcpts, users)
        .map(|u| user_name(pattern, u))
        .collect();
    // The sender depends on which connection sent it (an authenticated run sends as the
    // account it logged in as): take it from the fetched From: line, compare all the rest.
    let expected = match sent_from(ours) {
        Some(from) => g.build_from(n, &to, from),
        None => g.build(n, &to),
    };
    let e = seen.by_n.entry(n).or_default();
    e.0 += 1;
    if ours != expected.as_slice() {
        e.1 += 1;
        if examples.len() < 5 {
            let at = ours
                .iter()
                .zip(expected.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(ours.len().min(expected.len()));
            examples.push(format!(
                "message {}: corrupted, {} bytes fetched vs {} expected, first difference at byte {at}",
                g.id(n),
                ours.len(),
                expected.len()
            ));
        }
    }
}

pub struct VerifyJob {
    pub via: Via,
    pub addr: SocketAddr,
    pub tls: Option<Tls>,
    pub timeout: Duration,
    pub wait: Duration,
    pub user_pattern: String,
    pub password: String,
    pub users: u64,
    pub rcpts: u32,
    pub generator: Generator,
}

/// Check that every (user, message) pair in `delivered` arrived exactly once and intact.
pub fn verify(job: &VerifyJob, delivered: &[(u64, Vec<u64>)]) -> VerifyReport {
    let mut expected: HashMap<u64, Vec<u64>> = HashMap::new();
    for (n, users) in delivered {
        for u in users {
            expected.entry(*u).or_default().push(*n);
        }
    }
    let total_expected: u64 = expected.values().map(|v| v.len() as u64).sum();
    let mut users: Vec<u64> = expected.keys().copied().collect();
    users.sort_unstable();
    let via_name = format!(
        "{}://{}",
        match job.via {
            Via::Imap => "imap",
            Via::Imaps => "imaps",
            Via::Pop3 => "pop3",
            Via::Pop3s => "pop3s",
        },
        job.addr
    );
    let mut rt = match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return VerifyReport {
                via: via_name,
                expected: total_expected,
                lost: total_expected,
                examples: vec![format!("runtime: {e}")],
                ..Default::default()
            };
        }
    };
    let w = FetchWork {
        addr: job.addr,
        tls: job.tls.clone(),
        users: job.users,
        user_pattern: job.user_pattern.clone(),
        password: job.password.clone(),
        pop3_security: if job.via == Via::Pop3s {
            pop3::Security::Implicit
        } else {
            pop3::Security::None
        },
        imap_security: if job.via == Via::Imaps {
            imap::Security::Implicit
        } else {
            imap::Security::None
        },
        dele: false,
        headers_only: false,
        store_flags: false,
        expunge: false,
    };
    let deadline = Instant::now() + job.wait;
    let mut results: HashMap<u64, Seen> = HashMap::new();
    let mut examples = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut pending = users.clone();
    loop {
        let mut still = Vec::new();
        for &u in &pending {
            let name = user_name(&job.user_pattern, u);
            let mut seen = Seen::default();
            let mut ex = Vec::new();
            let r = rt.block_on(async {
                match job.via {
                    Via::Imap | Via::Imaps => {
                        imap_session(&w, job.timeout, &name, true, |r| {
                            for lit in &r.literals {
                                examine(
                                    &job.generator,
                                    job.rcpts,
                                    job.users,
                                    &job.user_pattern,
                                    lit,
                                    &mut seen,
                                    &mut ex,
                                );
                            }
                        })
                        .await
                    }
                    Via::Pop3 | Via::Pop3s => {
                        pop3_session(&w, job.timeout, &name, |m| {
                            examine(
                                &job.generator,
                                job.rcpts,
                                job.users,
                                &job.user_pattern,
                                m,
                                &mut seen,
                                &mut ex,
                            )
                        })
                        .await
                    }
                }
            });
            if let Err(e) = r {
                if errors.len() < 5 {
                    errors.push(format!("{name}: {e}"));
                }
                still.push(u);
                continue;
            }
            let missing = expected[&u].iter().any(|n| !seen.by_n.contains_key(n));
            if missing {
                still.push(u);
            }
            if !missing || Instant::now() >= deadline {
                examples.extend(ex);
            }
            results.insert(u, seen);
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        eprintln!(
            "verify: {} accounts still missing messages, re-checking",
            pending.len()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut rep = VerifyReport {
        via: via_name,
        expected: total_expected,
        ..Default::default()
    };
    for (u, ns) in &expected {
        let seen = results.remove(u).unwrap_or_default();
        rep.foreign += seen.foreign;
        for n in ns {
            match seen.by_n.get(n) {
                None => {
                    rep.lost += 1;
                    if rep.examples.len() < 5 {
                        rep.examples.push(format!(
                            "message {} LOST for {}",
                            job.generator.id(*n),
                            user_name(&job.user_pattern, *u)
                        ));
                    }
                }
                Some(&(copies, bad)) => {
                    rep.found += 1;
                    if copies > 1 {
                        rep.duplicated += copies - 1;
                    }
                    rep.corrupted += bad;
                }
            }
        }
    }
    rep.examples.extend(examples.into_iter().take(5));
    rep.examples.extend(errors);
    rep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::SizeSpec;

    #[test]
    fn parse_urls() {
        assert_eq!(
            parse_via("imap://127.0.0.1:20143").unwrap(),
            (Via::Imap, "127.0.0.1:20143".parse().unwrap())
        );
        assert_eq!(
            parse_via("pop3s://127.0.0.1").unwrap(),
            (Via::Pop3s, "127.0.0.1:995".parse().unwrap())
        );
        assert!(parse_via("http://x").is_err());
    }

    #[test]
    fn examine_messages() {
        let g = Generator {
            seed: 1,
            run_id: "R".into(),
            size: SizeSpec::Fixed(1000),
            from: "a@b".into(),
            date: "d".into(),
        };
        let to = vec![user_name("u%d", 4)];
        let m = g.build(3, &to);
        let mut delivered =
            b"Return-Path: <a@b>\r\nDelivered-To: u4\r\nReceived: from x\r\n\tby y\r\n".to_vec();
        delivered.extend_from_slice(&m);
        assert_eq!(loadgen_id(our_part(&delivered).unwrap()), Some(("R", 3)));
        let (mut seen, mut ex) = (Seen::default(), vec![]);
        examine(&g, 1, 10, "u%d", &delivered, &mut seen, &mut ex);
        examine(&g, 1, 10, "u%d", &delivered, &mut seen, &mut ex);
        let mut bad = delivered.clone();
        let l = bad.len();
        bad[l - 5] ^= 1;
        examine(&g, 1, 10, "u%d", &bad, &mut seen, &mut ex);
        examine(
            &g,
            1,
            10,
            "u%d",
            b"Subject: other\r\n\r\nx\r\n",
            &mut seen,
            &mut ex,
        );
        assert_eq!(seen.by_n[&3], (3, 1));
        assert_eq!(seen.foreign, 1);
        assert_eq!(ex.len(), 1);
    }
}
