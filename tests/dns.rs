//! The DNS resolver side thread against a real DNS server (dnsmasq on a loopback high port):
//! MX ordering and null MX, NXDOMAIN vs NODATA vs temporary failures, both address families,
//! long TXT records, caching, time bounds, overload and shutdown, and use from monoio.

#[path = "common/dns.rs"]
mod dns_server;

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use dns_server::Dnsmasq;
use surel::dns::{DnsConfig, IpLookup, MxHost, MxLookup, Resolver, TxtLookup};

const DKIM: &str = "v=DKIM1; k=ed25519; p=abc";

/// The zone most tests use. Every name under `.test` that is not listed is NXDOMAIN.
fn zone() -> Vec<String> {
    let long_txt = "a".repeat(300);
    [
        "--local=/test/",
        "--mx-host=example.test,mx2.example.test,20",
        "--mx-host=example.test,mx1.example.test,10",
        "--mx-host=example.test,MX0.Example.TEST,5",
        "--host-record=mx1.example.test,127.0.0.1",
        "--mx-host=nullmx.test,.,0",
        "--mx-host=mixed.test,.,0",
        "--mx-host=mixed.test,mx1.example.test,10",
        "--host-record=h.test,127.0.0.1,::1",
        "--host-record=v6only.test,::2",
        "--mx-host=xn--bcher-kva.test,mx1.example.test,10",
        // No shell here: quotes would be part of the text. A comma separates two
        // character-strings of one record.
        &format!("--txt-record=s._domainkey.example.test,{DKIM}"),
        &format!("--txt-record=long.test,{long_txt}"),
        "--txt-record=split.test,v=spf1,-all",
        "--txt-record=two.test,first",
        "--txt-record=two.test,second",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start_dnsmasq(extra: &[&str]) -> Dnsmasq {
    let zone = zone();
    let mut args: Vec<&str> = zone.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    Dnsmasq::start(&args)
}

fn config(server: SocketAddr) -> DnsConfig {
    DnsConfig {
        nameservers: vec![server],
        timeout: Duration::from_millis(500),
        attempts: 2,
        ..DnsConfig::default()
    }
}

/// Runs a future on a plain thread with monoio's epoll driver, as a core would.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio runtime")
        .block_on(future)
}

fn host(preference: u16, exchange: &str) -> MxHost {
    MxHost {
        preference,
        exchange: exchange.into(),
    }
}

fn temp_fail_reason(lookup: &MxLookup) -> &str {
    match lookup {
        MxLookup::TempFail(why) => why,
        other => panic!("TempFail expected, got {other:?}"),
    }
}

#[test]
fn mx_records_sorted_by_preference_lowercase_without_final_dot() {
    let server = start_dnsmasq(&[]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    let expected = MxLookup::Hosts(vec![
        host(5, "mx0.example.test"),
        host(10, "mx1.example.test"),
        host(20, "mx2.example.test"),
    ]);
    block_on(async {
        assert_eq!(resolver.mx("example.test").await, expected);
        // A final dot and any case name the same domain.
        assert_eq!(resolver.mx("EXAMPLE.test.").await, expected);
    });
}

#[test]
fn mx_equal_preferences_in_random_order() {
    let server = start_dnsmasq(&[
        "--local-ttl=300",
        "--mx-host=eq.test,a.eq.test,10",
        "--mx-host=eq.test,b.eq.test,10",
        "--mx-host=eq.test,c.eq.test,5",
    ]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    let mut firsts = std::collections::HashSet::new();
    block_on(async {
        // The answer comes from the cache after the first lookup; the order is drawn for
        // each lookup. Missing one order in 100 draws has probability 2^-99.
        for _ in 0..100 {
            let MxLookup::Hosts(hosts) = resolver.mx("eq.test").await else {
                panic!("hosts expected");
            };
            assert_eq!(hosts[0], host(5, "c.eq.test"));
            assert_eq!(hosts.len(), 3);
            firsts.insert(hosts[1].exchange.clone());
        }
    });
    assert_eq!(
        firsts.len(),
        2,
        "both orders of the equal preferences: {firsts:?}"
    );
}

#[test]
fn mx_nodata_is_implicit_mx_and_nxdomain_is_permanent() {
    let server = start_dnsmasq(&[]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    block_on(async {
        // h.test exists (A and AAAA) and has no MX: deliver to its addresses.
        assert_eq!(resolver.mx("h.test").await, MxLookup::NoMx);
        assert_eq!(resolver.mx("nosuch.test").await, MxLookup::NoSuchDomain);
        assert_eq!(resolver.ips("nosuch.test").await, IpLookup::NotFound);
        assert_eq!(resolver.txt("nosuch.test").await, TxtLookup::NotFound);
        // example.test exists with only MX records: no address, no TXT.
        assert_eq!(resolver.ips("example.test").await, IpLookup::NotFound);
        assert_eq!(resolver.txt("example.test").await, TxtLookup::NotFound);
    });
}

#[test]
fn null_mx() {
    let server = start_dnsmasq(&[]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    block_on(async {
        assert_eq!(resolver.mx("nullmx.test").await, MxLookup::NullMx);
        // Beside a real MX, the "." record is no host and is left out.
        assert_eq!(
            resolver.mx("mixed.test").await,
            MxLookup::Hosts(vec![host(10, "mx1.example.test")])
        );
    });
}

#[test]
fn unicode_domain_is_queried_in_a_label_form() {
    let server = start_dnsmasq(&[]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    block_on(async {
        assert_eq!(
            resolver.mx("bücher.test").await,
            MxLookup::Hosts(vec![host(10, "mx1.example.test")])
        );
    });
    assert_eq!(
        server.queries("MX", "xn--bcher-kva.test"),
        1,
        "{}",
        server.log()
    );
}

#[test]
fn malformed_names_are_not_queried() {
    let server = start_dnsmasq(&[]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    block_on(async {
        assert_eq!(resolver.mx("").await, MxLookup::NoSuchDomain);
        assert_eq!(resolver.mx("exa mple.test").await, MxLookup::NoSuchDomain);
        assert_eq!(resolver.mx("a\\.b.test").await, MxLookup::NoSuchDomain);
        assert_eq!(resolver.ips("127.0.0.1").await, IpLookup::NotFound);
        assert_eq!(resolver.txt("x..test").await, TxtLookup::NotFound);
        // A valid lookup afterwards, so the log below is known to be written.
        assert_eq!(resolver.mx("h.test").await, MxLookup::NoMx);
    });
    let log = server.log();
    let queries: Vec<&str> = log.lines().filter(|l| l.contains("query[")).collect();
    assert_eq!(queries.len(), 1, "only h.test is queried: {queries:?}");
}

#[test]
fn addresses_ipv4_first_then_ipv6() {
    let server = start_dnsmasq(&[]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    let v4: IpAddr = "127.0.0.1".parse().unwrap();
    let v6: IpAddr = "::1".parse().unwrap();
    block_on(async {
        assert_eq!(resolver.ips("h.test").await, IpLookup::Addrs(vec![v4, v6]));
        // One family missing (NODATA) is no failure.
        assert_eq!(
            resolver.ips("mx1.example.test").await,
            IpLookup::Addrs(vec![v4])
        );
        assert_eq!(
            resolver.ips("v6only.test").await,
            IpLookup::Addrs(vec!["::2".parse().unwrap()])
        );
    });
}

#[test]
fn txt_records_with_character_strings_concatenated() {
    let server = start_dnsmasq(&[]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    block_on(async {
        assert_eq!(
            resolver.txt("s._domainkey.example.test").await,
            TxtLookup::Records(vec![DKIM.into()])
        );
        // dnsmasq splits the 300 octets into strings of 255 and 45.
        assert_eq!(
            resolver.txt("long.test").await,
            TxtLookup::Records(vec!["a".repeat(300)])
        );
        assert_eq!(
            resolver.txt("split.test").await,
            TxtLookup::Records(vec!["v=spf1-all".into()])
        );
        let TxtLookup::Records(mut two) = resolver.txt("two.test").await else {
            panic!("records expected");
        };
        two.sort();
        assert_eq!(two, ["first", "second"]);
    });
}

#[test]
fn hosts_file_is_not_read_when_nameservers_are_configured() {
    // The names of this machine's /etc/hosts (the system resolver would answer them from
    // there); dnsmasq refuses them, so an address can only come from the file. hickory
    // answers localhost names itself, whatever the configuration: they are left out.
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let names: Vec<&str> = hosts
        .lines()
        .filter_map(|line| line.split('#').next())
        .flat_map(|line| line.split_whitespace().skip(1))
        .filter(|name| !name.contains("localhost") && !name.ends_with(".test"))
        .collect();
    let server = start_dnsmasq(&[]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    block_on(async {
        for name in names {
            let lookup = resolver.ips(name).await;
            assert!(
                matches!(lookup, IpLookup::TempFail(_)),
                "{name}: {lookup:?}"
            );
        }
    });
}

#[test]
fn refused_is_a_temporary_failure() {
    // dnsmasq answers REFUSED for names outside its local zones (it has no upstream).
    let server = start_dnsmasq(&[]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    block_on(async {
        let lookup = resolver.mx("example.org").await;
        assert!(
            temp_fail_reason(&lookup)
                .to_ascii_lowercase()
                .contains("refused"),
            "{lookup:?}"
        );
        assert!(matches!(
            resolver.ips("example.org").await,
            IpLookup::TempFail(_)
        ));
        assert!(matches!(
            resolver.txt("example.org").await,
            TxtLookup::TempFail(_)
        ));
    });
}

#[test]
fn closed_port_is_a_quick_temporary_failure() {
    let port = dns_server::free_port();
    let resolver = Resolver::start(config(SocketAddr::from(([127, 0, 0, 1], port)))).unwrap();
    let started = Instant::now();
    let lookup = block_on(resolver.mx("example.test"));
    temp_fail_reason(&lookup);
    assert!(matches!(
        block_on(resolver.ips("h.test")),
        IpLookup::TempFail(_)
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn silent_server_times_out_within_the_deadline() {
    // Bound but never answering: queries are lost, as with a dead server behind a firewall.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap();
    let _tcp = TcpListener::bind(addr);
    let mut config = config(addr);
    config.timeout = Duration::from_millis(300);
    let deadline = config.lookup_deadline();
    assert_eq!(deadline, Duration::from_millis(900));
    let resolver = Resolver::start(config).unwrap();
    let started = Instant::now();
    let lookup = block_on(resolver.mx("example.test"));
    let took = started.elapsed();
    temp_fail_reason(&lookup);
    assert!(took >= Duration::from_millis(300), "waited {took:?}");
    assert!(
        took < deadline + Duration::from_millis(500),
        "waited {took:?}"
    );
    let started = Instant::now();
    assert!(matches!(
        block_on(resolver.ips("h.test")),
        IpLookup::TempFail(_)
    ));
    assert!(started.elapsed() < deadline + Duration::from_millis(500));
}

#[test]
fn answers_are_cached_for_their_ttl() {
    let mut server = start_dnsmasq(&["--local-ttl=300"]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    let mx = block_on(resolver.mx("example.test"));
    assert!(
        matches!(mx, MxLookup::Hosts(ref h) if h.len() == 3),
        "{mx:?}"
    );
    let ips = block_on(resolver.ips("h.test"));
    let txt = block_on(resolver.txt("s._domainkey.example.test"));
    assert_eq!(block_on(resolver.mx("example.test")), mx);
    assert_eq!(server.queries("MX", "example.test"), 1, "{}", server.log());

    // With the server gone, the cached answers still come back, and a name that was
    // never asked fails: the answers above are really the cache's.
    server.stop();
    block_on(async {
        assert_eq!(resolver.mx("example.test").await, mx);
        assert_eq!(resolver.ips("h.test").await, ips);
        assert_eq!(resolver.txt("s._domainkey.example.test").await, txt);
        temp_fail_reason(&resolver.mx("nullmx.test").await);
    });
}

#[test]
fn zero_ttl_answers_are_asked_again() {
    // dnsmasq's default TTL for its own records is 0: nothing may be cached.
    let server = start_dnsmasq(&[]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    block_on(async {
        resolver.mx("example.test").await;
        resolver.mx("example.test").await;
    });
    assert_eq!(server.queries("MX", "example.test"), 2, "{}", server.log());
}

#[test]
fn usable_from_a_monoio_core_and_from_other_threads() {
    let server = start_dnsmasq(&[]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    let lookup = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(async { resolver.mx("example.test").await });
    assert!(
        matches!(lookup, MxLookup::Hosts(ref h) if h.len() == 3),
        "{lookup:?}"
    );

    // Clones on several threads at once share the one DNS thread.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let resolver = resolver.clone();
            std::thread::spawn(move || block_on(resolver.ips("h.test")))
        })
        .collect();
    for thread in threads {
        assert!(matches!(thread.join().unwrap(), IpLookup::Addrs(ref a) if a.len() == 2));
    }
}

#[test]
fn lookups_after_shutdown_fail_temporarily() {
    let server = start_dnsmasq(&[]);
    let resolver = Resolver::start(config(server.addr())).unwrap();
    let other_handle = resolver.clone();
    assert_eq!(block_on(resolver.mx("nullmx.test")), MxLookup::NullMx);
    resolver.shutdown();
    let started = Instant::now();
    for _ in 0..3 {
        let lookup = block_on(other_handle.mx("nullmx.test"));
        assert_eq!(temp_fail_reason(&lookup), "resolver stopped");
        assert_eq!(
            block_on(other_handle.txt("long.test")),
            TxtLookup::TempFail("resolver stopped".into())
        );
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_full_queue_answers_overloaded_at_once() {
    // One lookup at a time, one more waiting; the server never answers, so they stay.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap();
    let resolver = Resolver::start(DnsConfig {
        queue_capacity: 1,
        max_in_flight: 1,
        timeout: Duration::from_millis(400),
        attempts: 1,
        ..config(addr)
    })
    .unwrap();
    let started = Instant::now();
    let answers = block_on(async {
        let tasks: Vec<_> = (0..5)
            .map(|i| {
                let resolver = resolver.clone();
                monoio::spawn(async move { resolver.mx(&format!("d{i}.test")).await })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await);
        }
        answers
    });
    let overloaded = answers
        .iter()
        .filter(|a| **a == MxLookup::TempFail("resolver overloaded".into()))
        .count();
    // At most one in flight and one queued: at least three of five are turned away.
    assert!(overloaded >= 3, "{answers:?}");
    for answer in &answers {
        temp_fail_reason(answer);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn start_rejects_a_zero_timeout() {
    let config = DnsConfig {
        nameservers: vec![SocketAddr::from(([127, 0, 0, 1], 53))],
        timeout: Duration::ZERO,
        ..DnsConfig::default()
    };
    let error = Resolver::start(config).unwrap_err();
    assert!(error.to_string().contains("timeout"), "{error}");
}
