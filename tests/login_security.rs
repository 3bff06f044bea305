//! Login security end to end: brute-force throttling as an attacker meets it, sender binding on
//! submission, the log lines of login attempts and the fail2ban filter that reads them, the
//! isolation of accounts, and the TLS versions on offer.
//!
//! Every test runs the real server and talks to it over real TLS connections. Clients take
//! many addresses: all of 127.0.0.0/8 is loopback on Linux, so a connection from 127.0.0.7
//! reaches the server on 127.0.0.1 and the server sees 127.0.0.7. The server's log is the
//! witness of what happened inside: one line per login attempt, and `reason=password` only
//! when a password was actually checked.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

/// 127.0.0.`n`.
fn lo(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Where a client logs in.
#[derive(Clone, Copy, Debug)]
enum Door {
    /// Port 143, STARTTLS, LOGIN.
    Imap,
    /// Port 993, implicit TLS, LOGIN.
    Imaps,
    /// Port 110, STLS, USER/PASS.
    Pop3,
    /// Port 587, STARTTLS, AUTH PLAIN.
    Submission,
}

impl Door {
    /// The listener, and whether it speaks TLS from the start.
    fn listener(self) -> (&'static str, bool) {
        match self {
            Door::Imap => ("imap", false),
            Door::Imaps => ("imaps", true),
            Door::Pop3 => ("pop3", false),
            Door::Submission => ("submission", false),
        }
    }

    /// The protocol as the log names it.
    fn name(self) -> &'static str {
        match self {
            Door::Imap => "imap",
            Door::Imaps => "imaps",
            Door::Pop3 => "pop3",
            Door::Submission => "submission",
        }
    }
}

/// The server's answer to one login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// The password was checked and is wrong: `NO [AUTHENTICATIONFAILED]`, `-ERR [AUTH]`,
    /// `535 5.7.8`.
    Wrong,
    /// Temporary failure, nothing checked: `NO [UNAVAILABLE]`, `-ERR [SYS/TEMP]`, `454 4.7.0`.
    TryLater,
    Accepted,
    /// No answer within the client's patience; it dropped the connection.
    Dropped,
}

fn imap_quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Reads lines until one starts with `prefix` (skipping untagged or continuation lines before
/// it); `None` when the read timed out.
fn answer_line(c: &mut Client, prefix: &str) -> Option<String> {
    loop {
        match c.try_line() {
            Ok(Some(line)) if line.starts_with(prefix) => return Some(line),
            Ok(Some(_)) => {}
            Ok(None) => panic!("connection closed before the {prefix:?} line"),
            Err(e) if is_timeout(&e) => return None,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Opens a connection from `from`, brings it to the point where credentials are accepted
/// (STARTTLS or implicit TLS, greeting, EHLO) and sends one login. With `patience`, the
/// client gives up when no answer came within it. The connection is then dropped with a
/// reset, as an attacker would; it is returned only on success.
fn login_on(
    server: &TestServer,
    door: Door,
    from: IpAddr,
    user: &str,
    password: &str,
    patience: Option<Duration>,
) -> (Answer, Option<Client>) {
    let (listener, tls) = door.listener();
    let mut c = Client::connect_from(from, server.addr(listener), tls)
        .unwrap_or_else(|e| panic!("connect from {from} to {listener}: {e}"));
    c.reset_on_close();
    let prefix = match door {
        Door::Imap | Door::Imaps => {
            assert!(c.line().expect("greeting").starts_with("* OK"));
            if !tls {
                c.send("s STARTTLS\r\n");
                let ok = answer_line(&mut c, "s ").unwrap();
                assert!(ok.starts_with("s OK"), "{ok}");
                c.upgrade_tls();
            }
            c.send(&format!(
                "a LOGIN {} {}\r\n",
                imap_quoted(user),
                imap_quoted(password)
            ));
            "a "
        }
        Door::Pop3 => {
            assert!(c.line().expect("greeting").starts_with("+OK"));
            c.send("STLS\r\n");
            assert!(c.line().expect("STLS").starts_with("+OK"));
            c.upgrade_tls();
            c.send(&format!("USER {user}\r\n"));
            let ok = c.line().expect("USER");
            assert!(ok.starts_with("+OK"), "{ok}");
            c.send(&format!("PASS {password}\r\n"));
            ""
        }
        Door::Submission => {
            assert_eq!(c.reply().0, 220);
            c.expect("EHLO attacker.test", 250);
            c.expect("STARTTLS", 220);
            c.upgrade_tls();
            c.expect("EHLO attacker.test", 250);
            c.send(&format!("AUTH PLAIN {}\r\n", plain(user, password)));
            ""
        }
    };
    if let Some(patience) = patience {
        c.set_read_timeout(patience);
    }
    let Some(reply) = answer_line(&mut c, prefix) else {
        return (Answer::Dropped, None);
    };
    let answer = match door {
        Door::Imap | Door::Imaps if reply.starts_with("a OK") => Answer::Accepted,
        Door::Imap | Door::Imaps if reply.starts_with("a NO [AUTHENTICATIONFAILED]") => {
            Answer::Wrong
        }
        Door::Imap | Door::Imaps if reply.starts_with("a NO [UNAVAILABLE]") => Answer::TryLater,
        Door::Pop3 if reply.starts_with("+OK") => Answer::Accepted,
        Door::Pop3 if reply.starts_with("-ERR [AUTH]") => Answer::Wrong,
        Door::Pop3 if reply.starts_with("-ERR [SYS/TEMP]") => Answer::TryLater,
        Door::Submission if reply.starts_with("235 ") => Answer::Accepted,
        Door::Submission if reply.starts_with("535 5.7.8 ") => Answer::Wrong,
        Door::Submission
            if reply == "454 4.7.0 Temporary authentication failure, try again later" =>
        {
            Answer::TryLater
        }
        _ => panic!("{door:?} login as {user:?} from {from}: unexpected reply {reply:?}"),
    };
    let client = (answer == Answer::Accepted).then_some(c);
    (answer, client)
}

/// One login, waiting for the answer.
fn login(server: &TestServer, door: Door, from: IpAddr, user: &str, password: &str) -> Answer {
    login_on(server, door, from, user, password, None).0
}

/// Log lines of failed logins for `user` with `reason`.
fn failures(log: &str, user: &str, reason: &str) -> usize {
    let tail = format!("user={user:?} reason={reason}");
    log.lines()
        .filter(|l| l.contains("login failed: ") && l.ends_with(&tail))
        .count()
}

/// Waits (up to 10 s) until `ready(log)`; returns the log.
fn wait_for(server: &TestServer, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        if ready(&log) {
            return log;
        }
        assert!(Instant::now() < deadline, "no {what} in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the log holds at least `n` lines containing `needle`.
fn wait_lines(server: &TestServer, needle: &str, n: usize) -> String {
    wait_for(server, &format!("{n} lines with {needle:?}"), |log| {
        log.lines().filter(|l| l.contains(needle)).count() >= n
    })
}

fn is_login_line(line: &str) -> bool {
    line.contains(" login: protocol=") || line.contains(" login failed: protocol=")
}

/// Waits until the log holds `n` login lines, successful or failed.
fn wait_logins(server: &TestServer, n: usize) -> String {
    wait_for(server, &format!("{n} login lines"), |log| {
        log.lines().filter(|l| is_login_line(l)).count() >= n
    })
}

// ---------------------------------------------------------------------------------------------
// The brute-force attack, scripted.

/// The throttle settings the server runs with: surel's defaults, read from its own config.
struct Gates {
    free: u32,
    account_free: u32,
    base: Duration,
    max: Duration,
}

fn default_gates() -> Gates {
    let auth = surel::config::Config::from_toml("")
        .expect("default config")
        .auth;
    Gates {
        free: auth.throttle_after_failures,
        account_free: auth.throttle_account_after_failures,
        base: Duration::from_millis(auth.throttle_base_delay_ms),
        max: Duration::from_secs(auth.throttle_max_delay_secs),
    }
}

/// The most passwords one gate lets through in `run`: its free failures and the failure that
/// closes it, at once; then one each time it reopens, after `base`, `2·base`, `4·base`, ... up
/// to `max` each. (Checking takes time too, which only moves the reopenings later.)
fn gate_bound(free: u32, base: Duration, max: Duration, run: Duration) -> u32 {
    let mut checks = free + 1;
    let mut at = Duration::ZERO;
    let mut delay = base;
    loop {
        at += delay.min(max);
        if at > run {
            return checks;
        }
        checks += 1;
        delay = delay.saturating_mul(2);
    }
}

struct Attack<'a> {
    door: Door,
    /// Source addresses, used in turn.
    sources: &'a [IpAddr],
    user: &'a str,
    /// Attackers running at once, each with one connection at a time.
    threads: usize,
    run: Duration,
    /// How long an attacker waits for an answer before dropping the connection (`None`: until
    /// it comes).
    patience: Option<Duration>,
}

struct Tally {
    attempts: u64,
    wrong: u64,
    try_later: u64,
    dropped: u64,
    elapsed: Duration,
}

/// A new connection per guess, a wrong password each time, the connection dropped on the
/// answer or after `patience`, for `run`.
fn attack(server: &TestServer, a: &Attack) -> Tally {
    let next = AtomicUsize::new(0);
    let counts: [AtomicU64; 3] = Default::default();
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..a.threads {
            s.spawn(|| {
                while start.elapsed() < a.run {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let from = a.sources[i % a.sources.len()];
                    let guess = format!("guess-{i}");
                    let (answer, _) = login_on(server, a.door, from, a.user, &guess, a.patience);
                    let slot = match answer {
                        Answer::Wrong => 0,
                        Answer::TryLater => 1,
                        Answer::Dropped => 2,
                        Answer::Accepted => panic!("{guess} accepted"),
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let [wrong, try_later, dropped] = counts.map(|c| c.into_inner());
    Tally {
        attempts: next.into_inner() as u64,
        wrong,
        try_later,
        dropped,
        elapsed: start.elapsed(),
    }
}

/// About one password hash: the time a wrong login takes, measured from an address and for a
/// name that play no part in the attack.
fn hash_time(server: &TestServer, door: Door) -> Duration {
    let started = Instant::now();
    let answer = login(server, door, lo(250), "probe@example.test", "probe");
    assert_eq!(answer, Answer::Wrong);
    started.elapsed().max(Duration::from_millis(20))
}

/// When the passwords for `user` were checked, in seconds after the first check, from the log
/// lines' timestamps (`2026-12-02T09:20:12.345678Z  INFO ...`).
fn check_times(log: &str, user: &str) -> String {
    let tail = format!("user={user:?} reason=password");
    let seconds: Vec<f64> = log
        .lines()
        .filter(|l| l.ends_with(&tail))
        .filter_map(|l| {
            let time = l.get(11..26)?;
            let mut parts = time.split(':');
            let h: f64 = parts.next()?.parse().ok()?;
            let m: f64 = parts.next()?.parse().ok()?;
            let s: f64 = parts.next()?.parse().ok()?;
            Some(h * 3600.0 + m * 60.0 + s)
        })
        .collect();
    let first = seconds.first().copied().unwrap_or_default();
    let list: Vec<String> = seconds
        .iter()
        .map(|t| format!("{:.2}", t - first))
        .collect();
    format!("[{}] s", list.join(", "))
}

/// Runs the attack, waits until the server logged every attempt, prints the figures, and
/// asserts that the passwords it checked (its `reason=password` lines for the attacked name)
/// are at least the gate's free ones and at most `bound` (plus the timing margin).
fn run_attack(server: &TestServer, label: &str, a: &Attack, free: u32, bound: u32) {
    let tally = attack(server, a);
    // Every attempt that reached the server is logged once, checked or not.
    let needle = format!("user={:?} reason=", a.user);
    let log = wait_lines(server, &needle, tally.attempts as usize);
    let checked = failures(&log, a.user, "password") as u32;
    let secs = tally.elapsed.as_secs_f64();
    println!(
        "{label}: {} guesses in {secs:.1} s ({:.0} guesses/s; attackers at once: {}, \
         {}): {} answered wrong, {} try later, {} dropped unanswered; \
         passwords checked (server log): {checked} = {:.2} checks/s, at {}; \
         intended bound {bound}",
        tally.attempts,
        tally.attempts as f64 / secs,
        a.threads,
        match a.patience {
            Some(p) => format!("each dropping its connection after {} ms", p.as_millis()),
            None => "each waiting for the answer".into(),
        },
        tally.wrong,
        tally.try_later,
        tally.dropped,
        f64::from(checked) / secs,
        check_times(&log, a.user),
    );
    // The attack really ran: far more guesses than the gate lets through.
    assert!(
        tally.attempts >= 5 * u64::from(bound),
        "only {} guesses: the test did not attack",
        tally.attempts
    );
    assert!(
        tally.wrong <= u64::from(checked),
        "a wrong answer without a check"
    );
    // The gate was open at first: the free failures and the one that closes it were checked.
    assert!(checked > free, "{checked} passwords checked");
    assert!(
        checked <= bound + TIMING_MARGIN,
        "{checked} passwords checked, bound {bound}"
    );
}

/// Slack on the bound for timing: an attempt admitted just before the attack's end is logged
/// after it.
const TIMING_MARGIN: u32 = 1;

/// Which gate an attack runs into.
#[derive(Clone, Copy)]
enum Target {
    /// Every guess from 127.0.0.1: the address gate.
    OneAddress,
    /// Guesses from 200 addresses in turn, all at one account: the account gate.
    ManyAddresses,
}

/// How the attacker behaves.
#[derive(Clone, Copy)]
enum Pace {
    /// One guess at a time, each answer awaited.
    OneAtATime,
    /// Eight attackers at once, each dropping its connection after about one hash time
    /// (whether or not the answer came) and going on with the next guess.
    DroppingInParallel,
}

/// A 15 s attack on alice's password: the passwords checked must stay within the bound of
/// the gate it runs into, computed from surel's default configuration.
fn attack_test(door: Door, target: Target, pace: Pace) {
    let server = TestServer::start(&[ALICE], "");
    let g = default_gates();
    let run = Duration::from_secs(15);
    let (sources, free): (Vec<IpAddr>, u32) = match target {
        Target::OneAddress => (vec![lo(1)], g.free),
        Target::ManyAddresses => ((2..=201).map(lo).collect(), g.account_free),
    };
    let bound = gate_bound(free, g.base, g.max, run);
    let (threads, patience) = match pace {
        Pace::OneAtATime => (1, None),
        Pace::DroppingInParallel => (8, Some(hash_time(&server, door))),
    };
    let label = match target {
        Target::OneAddress => format!("{}, alice's password from one address", door.name()),
        Target::ManyAddresses => format!("{}, alice's password from 200 addresses", door.name()),
    };
    run_attack(
        &server,
        &label,
        &Attack {
            door,
            sources: &sources,
            user: ALICE,
            threads,
            run,
            patience,
        },
        free,
        bound,
    );
}

#[test]
fn imap_guesses_from_one_address_are_bounded_by_its_gate() {
    attack_test(Door::Imaps, Target::OneAddress, Pace::OneAtATime);
}

#[test]
fn smtp_guesses_from_one_address_are_bounded_by_its_gate() {
    attack_test(Door::Submission, Target::OneAddress, Pace::OneAtATime);
}

#[test]
fn guesses_at_one_account_from_many_addresses_are_bounded_by_its_gate() {
    attack_test(Door::Imaps, Target::ManyAddresses, Pace::OneAtATime);
}

// The same attacks with guesses in flight at once, each connection dropped before its answer:
// bounded because the gates count checks in flight.

#[test]
fn dropped_parallel_imap_guesses_from_one_address_are_bounded_by_its_gate() {
    attack_test(Door::Imaps, Target::OneAddress, Pace::DroppingInParallel);
}

#[test]
fn dropped_parallel_smtp_guesses_from_one_address_are_bounded_by_its_gate() {
    attack_test(
        Door::Submission,
        Target::OneAddress,
        Pace::DroppingInParallel,
    );
}

#[test]
fn dropped_parallel_guesses_at_one_account_from_many_addresses_are_bounded_by_its_gate() {
    attack_test(Door::Imaps, Target::ManyAddresses, Pace::DroppingInParallel);
}

// ---------------------------------------------------------------------------------------------
// What the gates do to particular logins.

#[test]
fn a_success_forgives_only_its_own_account() {
    // A long first delay: "closed" must still hold a few logins later on a loaded machine.
    let server = TestServer::start(
        &[ALICE, BOB, "carol@example.test", "dave@example.test"],
        "[auth]\nthrottle_after_failures = 2\nthrottle_base_delay_ms = 10000\n",
    );
    // From one address: two wrong passwords for bob (free), then alice logs in.
    let a = lo(2);
    assert_eq!(login(&server, Door::Imaps, a, BOB, "x1"), Answer::Wrong);
    assert_eq!(login(&server, Door::Imaps, a, BOB, "x2"), Answer::Wrong);
    assert_eq!(
        login(&server, Door::Imaps, a, ALICE, PASSWORD),
        Answer::Accepted
    );
    // Alice's success did not wipe bob's failures: the next one is the third and closes the
    // address's gate, so bob's right password is not even checked.
    assert_eq!(login(&server, Door::Imaps, a, BOB, "x3"), Answer::Wrong);
    assert_eq!(
        login(&server, Door::Imaps, a, BOB, PASSWORD),
        Answer::TryLater
    );
    // Nor anyone else's from that address.
    assert_eq!(
        login(&server, Door::Imaps, a, ALICE, PASSWORD),
        Answer::TryLater
    );

    // The other half: from another address, a success does forgive its own account's
    // failures. Carol fails twice then logs in; dave then has the two free failures again.
    let b = lo(3);
    let carol = "carol@example.test";
    let dave = "dave@example.test";
    assert_eq!(login(&server, Door::Imaps, b, carol, "y1"), Answer::Wrong);
    assert_eq!(login(&server, Door::Imaps, b, carol, "y2"), Answer::Wrong);
    assert_eq!(
        login(&server, Door::Imaps, b, carol, PASSWORD),
        Answer::Accepted
    );
    assert_eq!(login(&server, Door::Imaps, b, dave, "z1"), Answer::Wrong);
    assert_eq!(login(&server, Door::Imaps, b, dave, "z2"), Answer::Wrong);
    assert_eq!(
        login(&server, Door::Imaps, b, dave, PASSWORD),
        Answer::Accepted
    );

    let log = wait_logins(&server, 12);
    assert_eq!(failures(&log, BOB, "password"), 3, "{log}");
    assert_eq!(failures(&log, BOB, "throttled"), 1, "{log}");
    assert_eq!(failures(&log, ALICE, "throttled"), 1, "{log}");
    assert_eq!(failures(&log, dave, "password"), 2, "{log}");
    assert_eq!(failures(&log, dave, "throttled"), 0, "{log}");
}

#[test]
fn the_right_password_while_throttled_gets_try_later_then_succeeds() {
    let delay = Duration::from_secs(3);
    let server = TestServer::start(
        &[ALICE, BOB, "carol@example.test"],
        &format!(
            "[auth]\nthrottle_after_failures = 2\nthrottle_account_after_failures = 5\n\
             throttle_base_delay_ms = {}\n",
            delay.as_millis()
        ),
    );
    let carol = "carol@example.test";
    // Carol's owner logs in from her usual address before anything happens.
    let owner = lo(10);
    assert_eq!(
        login(&server, Door::Imaps, owner, carol, PASSWORD),
        Answer::Accepted
    );

    // The address gate: three wrong passwords from one address close it.
    let a = lo(1);
    for guess in ["w1", "w2", "w3"] {
        assert_eq!(login(&server, Door::Imaps, a, BOB, guess), Answer::Wrong);
    }
    let closed = Instant::now();
    assert_eq!(
        login(&server, Door::Imaps, a, BOB, PASSWORD),
        Answer::TryLater
    );
    assert_eq!(
        login(&server, Door::Pop3, a, ALICE, PASSWORD),
        Answer::TryLater
    );
    assert_eq!(
        login(&server, Door::Submission, a, ALICE, PASSWORD),
        Answer::TryLater
    );
    assert!(
        closed.elapsed() < delay,
        "too slow to observe the closed gate"
    );
    // Waiting out the delay is enough: refused attempts did not extend it.
    std::thread::sleep(
        (closed + delay + Duration::from_millis(200)).saturating_duration_since(Instant::now()),
    );
    assert_eq!(
        login(&server, Door::Imaps, a, BOB, PASSWORD),
        Answer::Accepted
    );

    // The account gate: one wrong password from each of six addresses closes carol's gate
    // against every address...
    for n in 2..=7 {
        assert_eq!(
            login(&server, Door::Imaps, lo(n), carol, "guess"),
            Answer::Wrong
        );
    }
    let closed = Instant::now();
    let newcomer = lo(8);
    assert_eq!(
        login(&server, Door::Imaps, newcomer, carol, PASSWORD),
        Answer::TryLater
    );
    // ...but the address she logged in from before: an attack does not lock her out.
    assert_eq!(
        login(&server, Door::Imaps, owner, carol, PASSWORD),
        Answer::Accepted
    );
    assert!(
        closed.elapsed() < delay,
        "too slow to observe the closed gate"
    );
    std::thread::sleep(
        (closed + delay + Duration::from_millis(200)).saturating_duration_since(Instant::now()),
    );
    assert_eq!(
        login(&server, Door::Imaps, newcomer, carol, PASSWORD),
        Answer::Accepted
    );

    let log = wait_logins(&server, 17);
    assert_eq!(failures(&log, BOB, "password"), 3, "{log}");
    assert_eq!(failures(&log, BOB, "throttled"), 1, "{log}");
    assert_eq!(failures(&log, ALICE, "throttled"), 2, "{log}");
    assert_eq!(failures(&log, carol, "password"), 6, "{log}");
    assert_eq!(failures(&log, carol, "throttled"), 1, "{log}");
}

#[test]
fn fifty_concurrent_logins_from_one_address_after_a_restart_all_succeed() {
    const N: usize = 50;
    let users: Vec<String> = (0..N).map(|i| format!("user{i:02}@example.test")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    // Two verifier threads, four checks in flight per address: 46 of the 50 logins wait.
    let mut server = TestServer::start(
        &names,
        "[auth]\nverifier_threads = 2\nmax_pending_per_ip = 4\nbusy_wait_secs = 10\n",
    );
    assert_eq!(
        login(&server, Door::Imaps, lo(1), &users[0], PASSWORD),
        Answer::Accepted
    );
    // A restart: the credential cache is empty, every login costs a hash.
    server.stop();
    let before = server.log().len();
    server.launch();

    let barrier = Barrier::new(N);
    let started = Instant::now();
    let results: Vec<(String, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = users
            .iter()
            .map(|user| {
                let (server, barrier) = (&server, &barrier);
                s.spawn(move || {
                    let mut c =
                        Client::connect_from(lo(1), server.addr("imaps"), true).expect("connect");
                    assert!(c.line().expect("greeting").starts_with("* OK"));
                    barrier.wait();
                    let sent = Instant::now();
                    c.send(&format!("a LOGIN {user} {}\r\n", imap_quoted(PASSWORD)));
                    let reply = answer_line(&mut c, "a ").expect("LOGIN answer");
                    let took = sent.elapsed();
                    c.send("b LOGOUT\r\n");
                    (reply, took)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = started.elapsed();
    let mut took: Vec<Duration> = results.iter().map(|(_, t)| *t).collect();
    took.sort();
    println!(
        "{N} concurrent IMAP logins after a restart: all answered within {:.2} s; \
         per login min {:.0} ms, median {:.0} ms, max {:.0} ms",
        wall.as_secs_f64(),
        took[0].as_secs_f64() * 1e3,
        took[N / 2].as_secs_f64() * 1e3,
        took[N - 1].as_secs_f64() * 1e3,
    );
    for (reply, _) in &results {
        assert!(reply.starts_with("a OK"), "{reply}");
    }
    let log = wait_lines(
        &server,
        "login: protocol=imaps client=127.0.0.1 user=",
        N + 1,
    );
    let after = &log[before..];
    assert_eq!(
        after
            .matches("login: protocol=imaps client=127.0.0.1")
            .count(),
        N
    );
    assert!(!after.contains("login failed"), "{after}");
}

// ---------------------------------------------------------------------------------------------
// Sender binding.

/// A submission session (465) authenticated as `account`.
fn submit_as(server: &TestServer, account: &str) -> Client {
    let mut c = Client::connect_tls(server.addr("submissions"));
    assert_eq!(c.reply().0, 220);
    c.expect("EHLO client.test", 250);
    c.expect(&format!("AUTH PLAIN {}", plain(account, PASSWORD)), 235);
    c
}

/// Text in every test message's body, which must never reach the log.
const BODY: &str = "Body text that is nobody's business but bob's.";

fn message(from: &str, subject: &str) -> String {
    format!("From: {from}\r\nTo: <bob@example.test>\r\nSubject: {subject}\r\n\r\n{BODY}\r\n")
}

/// The header block of a stored message, folded lines joined.
fn unfolded_header(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let header = text.split("\r\n\r\n").next().unwrap_or_default();
    header.replace("\r\n\t", " ").replace("\r\n ", " ")
}

fn header_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

#[test]
fn authenticated_senders_may_only_use_their_own_addresses() {
    let mut server = TestServer::start(
        &[ALICE, BOB],
        "[aliases]\n\"sales@example.test\" = [\"alice@example.test\"]\n",
    );
    let mut c = submit_as(&server, ALICE);
    // Someone else's address as the envelope sender.
    let (code, text) = c.cmd("MAIL FROM:<bob@example.test>");
    assert_eq!(code, 553, "{text}");
    assert!(
        text.starts_with("553 5.7.1 Sender address not owned"),
        "{text}"
    );
    // Her own envelope sender, someone else's local address in From:: refused after DATA.
    let (code, text) = smtp_send(
        &mut c,
        ALICE,
        &[BOB],
        &message("Bob <bob@example.test>", "forged"),
    );
    assert_eq!(code, 553, "{text}");
    assert!(
        text.starts_with("553 5.7.1 From: address not owned"),
        "{text}"
    );
    // Her addresses: the account in any case, a +tag form, an alias that leads to her; and a
    // From: in a domain that is not local, which the server cannot judge.
    let allowed = [
        (ALICE, "Alice <alice@example.test>", "own"),
        ("Alice@Example.TEST", "ALICE@example.test", "any case"),
        (
            "alice+lists@example.test",
            "alice+lists@example.test",
            "tagged",
        ),
        ("sales@example.test", "Sales <sales@example.test>", "alias"),
        (ALICE, "Alice <alice@elsewhere.test>", "external"),
    ];
    for (mail_from, from, subject) in allowed {
        let (code, text) = smtp_send(&mut c, mail_from, &[BOB], &message(from, subject));
        assert_eq!(code, 250, "{subject}: {text}");
    }
    c.expect("QUIT", 221);
    let log = server.wait_log(
        "sender refused: client=127.0.0.1 user=alice@example.test from=<bob@example.test>",
    );
    server.stop();
    assert!(
        !log.contains(BODY) && !log.contains("Subject"),
        "message text in the log"
    );
    let stored = inbox(&server, BOB);
    let subjects: Vec<String> = stored
        .iter()
        .map(|m| {
            header_value(&unfolded_header(m), "Subject")
                .unwrap()
                .to_string()
        })
        .collect();
    let expected: Vec<&str> = allowed.iter().map(|(_, _, s)| *s).collect();
    assert_eq!(subjects, expected, "the forged message must not be stored");
    for m in &stored {
        let header = unfolded_header(m);
        let received = header_value(&header, "Received").expect("Received:");
        assert!(
            received.contains("(Authenticated sender: alice@example.test)"),
            "{received}"
        );
    }

    // Without the binding anything goes; the trace still names the account.
    let mut server = TestServer::start(&[ALICE, BOB], "[auth]\nenforce_sender = false\n");
    let mut c = submit_as(&server, ALICE);
    let (code, text) = smtp_send(
        &mut c,
        BOB,
        &[BOB],
        &message("Bob <bob@example.test>", "as bob"),
    );
    assert_eq!(code, 250, "{text}");
    c.expect("QUIT", 221);
    server.stop();
    let stored = inbox(&server, BOB);
    assert_eq!(stored.len(), 1);
    let header = unfolded_header(&stored[0]);
    assert_eq!(
        header_value(&header, "From"),
        Some("Bob <bob@example.test>")
    );
    assert!(
        header_value(&header, "Received")
            .unwrap()
            .contains("(Authenticated sender: alice@example.test)"),
        "{header}"
    );
}

// ---------------------------------------------------------------------------------------------
// What is logged.

#[test]
fn login_attempts_are_logged_with_protocol_client_user_and_reason() {
    let server = TestServer::start(&[ALICE], "");
    let wrong = "Tr0ub4dor&3";
    let forged = "x\" client=10.9.9.9 reason=ok";
    // First the owner (so the attempts below, six against her account, do not close its gate
    // for her: she logged in from this address).
    for door in [Door::Imap, Door::Pop3, Door::Submission] {
        assert_eq!(
            login(&server, door, lo(8), ALICE, PASSWORD),
            Answer::Accepted
        );
    }
    assert_eq!(
        login(&server, Door::Imap, lo(2), ALICE, wrong),
        Answer::Wrong
    );
    assert_eq!(
        login(&server, Door::Pop3, lo(3), ALICE, wrong),
        Answer::Wrong
    );
    assert_eq!(
        login(&server, Door::Submission, lo(4), ALICE, wrong),
        Answer::Wrong
    );
    // An unknown name is logged as given; a name made to look like more fields is escaped.
    assert_eq!(
        login(&server, Door::Imaps, lo(5), "Nobody@Example.TEST", wrong),
        Answer::Wrong
    );
    assert_eq!(
        login(&server, Door::Imaps, lo(6), forged, wrong),
        Answer::Wrong
    );
    for _ in 0..3 {
        assert_eq!(
            login(&server, Door::Imaps, lo(7), ALICE, wrong),
            Answer::Wrong
        );
    }
    assert_eq!(
        login(&server, Door::Imaps, lo(7), ALICE, PASSWORD),
        Answer::TryLater
    );

    let log = wait_logins(&server, 12);
    let failed = |door: Door, n: u8, user: &str, reason: &str| {
        format!(
            "login failed: protocol={} client=127.0.0.{n} user={user:?} reason={reason}",
            door.name()
        )
    };
    let mut expected = vec![
        failed(Door::Imap, 2, ALICE, "password"),
        failed(Door::Pop3, 3, ALICE, "password"),
        failed(Door::Submission, 4, ALICE, "password"),
        failed(Door::Imaps, 5, "Nobody@Example.TEST", "password"),
        r#"login failed: protocol=imaps client=127.0.0.6 user="x\" client=10.9.9.9 reason=ok" reason=password"#.to_string(),
        failed(Door::Imaps, 7, ALICE, "password"),
        failed(Door::Imaps, 7, ALICE, "password"),
        failed(Door::Imaps, 7, ALICE, "password"),
        failed(Door::Imaps, 7, ALICE, "throttled"),
    ];
    for door in [Door::Imap, Door::Pop3, Door::Submission] {
        expected.push(format!(
            "login: protocol={} client=127.0.0.8 user={ALICE}",
            door.name()
        ));
    }
    // Each login line is "<timestamp>  INFO <target>: " and then exactly the fields.
    let mut logged: Vec<String> = log
        .lines()
        .filter(|l| is_login_line(l))
        .map(|l| {
            let (prefix, fields) = l.split_at(l.find("login").unwrap());
            assert!(prefix.contains(" INFO "), "{l}");
            fields.to_string()
        })
        .collect();
    logged.sort();
    expected.sort();
    assert_eq!(logged, expected);
    assert!(!log.contains(wrong), "a password in the log");
    assert!(!log.contains(PASSWORD), "a password in the log");
}

#[test]
fn capacity_waits_are_answered_try_later_and_never_counted_as_failures() {
    // One check in flight per address and no patience: concurrent logins from one address
    // find the slot taken.
    const N: usize = 8;
    let server = TestServer::start(
        &[ALICE],
        "[auth]\nmax_pending_per_ip = 1\nbusy_wait_secs = 0\n",
    );
    let barrier = Barrier::new(N);
    let answers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|_| {
                let (server, barrier) = (&server, &barrier);
                s.spawn(move || {
                    let mut c =
                        Client::connect_from(lo(2), server.addr("imaps"), true).expect("connect");
                    assert!(c.line().expect("greeting").starts_with("* OK"));
                    barrier.wait();
                    c.send(&format!("a LOGIN {ALICE} {}\r\n", imap_quoted(PASSWORD)));
                    answer_line(&mut c, "a ").expect("LOGIN answer")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = answers.iter().filter(|a| a.starts_with("a OK")).count();
    let busy = answers
        .iter()
        .filter(|a| a.starts_with("a NO [UNAVAILABLE]"))
        .count();
    assert_eq!(ok + busy, N, "{answers:?}");
    assert!(ok >= 1 && busy >= 1, "{answers:?}");
    let log = wait_logins(&server, N);
    assert_eq!(failures(&log, ALICE, "busy"), busy, "{log}");
    assert_eq!(failures(&log, ALICE, "password"), 0, "{log}");
    // Not one failure was counted: the address still has its free failures, and the third
    // wrong password is still checked.
    for guess in ["w1", "w2", "w3"] {
        assert_eq!(
            login(&server, Door::Imaps, lo(2), ALICE, guess),
            Answer::Wrong
        );
    }
    assert_eq!(
        login(&server, Door::Imaps, lo(2), ALICE, PASSWORD),
        Answer::TryLater
    );
}

// ---------------------------------------------------------------------------------------------
// fail2ban.

fn fail2ban_regex(log: &std::path::Path, filter: &str) -> String {
    let out = Command::new("fail2ban-regex")
        .arg("--print-no-missed")
        .arg(log)
        .arg(filter)
        .output()
        .expect("fail2ban-regex");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The "matched" figure of fail2ban-regex's "Lines: N lines, I ignored, M matched, X missed".
fn matched(report: &str) -> usize {
    let line = report
        .lines()
        .find(|l| l.starts_with("Lines: "))
        .unwrap_or_else(|| panic!("no summary:\n{report}"));
    let (before, _) = line.split_once(" matched").unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn the_fail2ban_filter_matches_exactly_the_failed_logins() {
    if Command::new("fail2ban-regex")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: fail2ban-regex is not on PATH (Debian: apt-get install fail2ban)");
        return;
    }
    let server = TestServer::start(&[ALICE], "");
    let wrong = "wrong";
    for door in [Door::Imap, Door::Imaps, Door::Pop3, Door::Submission] {
        assert_eq!(
            login(&server, door, lo(7), ALICE, PASSWORD),
            Answer::Accepted
        );
    }
    assert_eq!(
        login(&server, Door::Imap, lo(2), ALICE, wrong),
        Answer::Wrong
    );
    assert_eq!(
        login(&server, Door::Pop3, lo(3), ALICE, wrong),
        Answer::Wrong
    );
    assert_eq!(
        login(&server, Door::Submission, lo(4), ALICE, wrong),
        Answer::Wrong
    );
    // A name made to hand fail2ban another address.
    let forged = "x\" client=10.9.9.9 user=\"y";
    assert_eq!(
        login(&server, Door::Imaps, lo(5), forged, wrong),
        Answer::Wrong
    );
    for _ in 0..3 {
        assert_eq!(
            login(&server, Door::Imaps, lo(6), ALICE, wrong),
            Answer::Wrong
        );
    }
    assert_eq!(
        login(&server, Door::Imaps, lo(6), ALICE, PASSWORD),
        Answer::TryLater
    );
    let log = wait_logins(&server, 12);
    let failed = log
        .lines()
        .filter(|l| l.ends_with(" reason=password"))
        .count();
    assert_eq!(failed, 7);

    let log_file = server.dir.path().join("server.log");
    let filter = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/fail2ban/filter.d/surel.conf"
    );
    let report = fail2ban_regex(&log_file, filter);
    assert_eq!(matched(&report), failed, "{report}");
    // The addresses fail2ban would ban: the clients that failed, never the forged one, never
    // the one that only logged in.
    let out = Command::new("fail2ban-regex")
        .args(["--out", "ip"])
        .arg(&log_file)
        .arg(filter)
        .output()
        .expect("fail2ban-regex");
    let mut hosts: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    hosts.sort();
    let expected = [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
        "127.0.0.6",
        "127.0.0.6",
        "127.0.0.6",
    ];
    assert_eq!(hosts, expected);
    // Aggressive mode also counts the attempt refused while throttled.
    let aggressive = fail2ban_regex(&log_file, &format!("{filter}[mode=aggressive]"));
    assert_eq!(matched(&aggressive), failed + 1, "{aggressive}");
}

// ---------------------------------------------------------------------------------------------
// Isolation between accounts, and TLS versions.

/// Sends an IMAP command; returns (every line before the tagged one, the tagged line).
fn imap_command(c: &mut Client, tag: &str, command: &str) -> (Vec<String>, String) {
    c.send(&format!("{tag} {command}\r\n"));
    let mut before = Vec::new();
    loop {
        let line = c.line().expect("IMAP response");
        if line.starts_with(&format!("{tag} ")) {
            return (before, line);
        }
        before.push(line);
    }
}

#[test]
fn an_account_reaches_only_its_own_mail() {
    let server = TestServer::start(&[ALICE, BOB], "");
    let mut c = smtp_session(&server);
    for (to, text) in [(ALICE, "only-for-alice"), (BOB, "only-for-bob")] {
        let body = format!("Subject: {text}\r\n\r\n{text}\r\n");
        assert_eq!(smtp_send(&mut c, "s@r.test", &[to], &body).0, 250);
    }
    c.expect("QUIT", 221);

    let (_, c) = login_on(&server, Door::Imaps, lo(1), ALICE, PASSWORD, None);
    let mut c = c.expect("alice logs in");
    let (lines, status) = imap_command(&mut c, "l", "LIST \"\" \"*\"");
    assert!(status.starts_with("l OK"), "{status}");
    assert!(
        lines.iter().all(|l| !l.to_lowercase().contains("bob")),
        "{lines:?}"
    );
    let (lines, status) = imap_command(&mut c, "s", "SELECT INBOX");
    assert!(status.starts_with("s OK"), "{status}");
    assert!(lines.contains(&"* 1 EXISTS".to_string()), "{lines:?}");
    let (lines, status) = imap_command(&mut c, "f", "FETCH 1:* BODY.PEEK[]");
    assert!(status.starts_with("f OK"), "{status}");
    let fetched = lines.join("\n");
    assert!(fetched.contains("only-for-alice") && !fetched.contains("only-for-bob"));
    // Names that might lead to bob's mailboxes lead nowhere.
    let names = [
        "bob@example.test",
        "bob@example.test/INBOX",
        "../bob@example.test/INBOX",
        "/bob@example.test/INBOX",
        "~bob@example.test/INBOX",
        "Other Users/bob@example.test/INBOX",
        "#shared/bob@example.test/INBOX",
        "user/bob@example.test/INBOX",
    ];
    for (i, name) in names.iter().enumerate() {
        let tag = format!("x{i}");
        let (_, status) = imap_command(&mut c, &tag, &format!("SELECT {}", imap_quoted(name)));
        assert!(status.starts_with(&format!("{tag} NO")), "{name}: {status}");
        let (lines, status) = imap_command(
            &mut c,
            &tag,
            &format!("STATUS {} (MESSAGES)", imap_quoted(name)),
        );
        assert!(
            status.starts_with(&format!("{tag} NO")),
            "{name}: {status} {lines:?}"
        );
    }
    c.send("z LOGOUT\r\n");

    // Alice's password does not let her act as bob (a SASL authorization identity).
    let as_bob = b64(format!("{BOB}\0{ALICE}\0{PASSWORD}").as_bytes());
    let mut c = Client::connect_from(lo(1), server.addr("imaps"), true).unwrap();
    assert!(c.line().unwrap().starts_with("* OK"));
    let (_, status) = imap_command(&mut c, "a", &format!("AUTHENTICATE PLAIN {as_bob}"));
    assert!(status.starts_with("a NO [AUTHORIZATIONFAILED]"), "{status}");
    let mut c = Client::connect_from(lo(1), server.addr("submissions"), true).unwrap();
    assert_eq!(c.reply().0, 220);
    c.expect("EHLO client.test", 250);
    c.expect(&format!("AUTH PLAIN {as_bob}"), 535);
    let mut c = Client::connect_from(lo(1), server.addr("pop3s"), true).unwrap();
    assert!(c.line().unwrap().starts_with("+OK"));
    c.send(&format!("AUTH PLAIN {as_bob}\r\n"));
    let reply = c.line().unwrap();
    assert!(reply.starts_with("-ERR"), "{reply}");

    // POP3 as alice: her message only.
    let (_, c) = login_on(&server, Door::Pop3, lo(1), ALICE, PASSWORD, None);
    let mut c = c.expect("alice logs in");
    c.send("STAT\r\n");
    let stat = c.line().unwrap();
    assert!(stat.starts_with("+OK 1 "), "{stat}");
    c.send("RETR 1\r\n");
    let retr = String::from_utf8_lossy(&c.raw_until(b"\r\n.\r\n")).into_owned();
    assert!(
        retr.contains("only-for-alice") && !retr.contains("only-for-bob"),
        "{retr}"
    );
}

/// How an `openssl s_client` handshake ended.
#[derive(Debug, PartialEq, Eq)]
enum Handshake {
    Done,
    /// The server answered the client's hello with an alert.
    RefusedByServer,
    Failed(String),
}

/// Runs `openssl s_client` against `addr` with one TLS version (and STARTTLS for `starttls`:
/// "smtp", "imap", "pop3").
fn openssl_handshake(
    addr: std::net::SocketAddr,
    starttls: Option<&str>,
    version: &str,
) -> Handshake {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &addr.to_string(),
        "-servername",
        "localhost",
    ])
    .arg(version)
    // Let the client offer old versions at all: refusing them must be the server's doing.
    .args(["-cipher", "DEFAULT:@SECLEVEL=0"]);
    if let Some(protocol) = starttls {
        cmd.args(["-starttls", protocol]);
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.contains("Cipher is ") && !text.contains("Cipher is (NONE)") {
        Handshake::Done
    } else if text.contains("SSL alert number") {
        Handshake::RefusedByServer
    } else {
        Handshake::Failed(text)
    }
}

#[test]
fn tls_below_1_2_is_refused_on_every_tls_port() {
    let server = TestServer::start(&[ALICE], "");
    let ports = [
        ("submissions", None),
        ("imaps", None),
        ("pop3s", None),
        ("submission", Some("smtp")),
        ("smtp", Some("smtp")),
        ("imap", Some("imap")),
        ("pop3", Some("pop3")),
    ];
    for (port, starttls) in ports {
        let addr = server.addr(port);
        for version in ["-tls1_3", "-tls1_2"] {
            assert_eq!(
                openssl_handshake(addr, starttls, version),
                Handshake::Done,
                "{port} {version}"
            );
        }
        for version in ["-tls1_1", "-tls1"] {
            assert_eq!(
                openssl_handshake(addr, starttls, version),
                Handshake::RefusedByServer,
                "{port} {version}"
            );
        }
    }
}
