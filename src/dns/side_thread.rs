//! The `dns` thread: a tokio current-thread runtime, the hickory resolver built on it, and the
//! loop that takes requests off the queue and runs each lookup as a task.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_channel::oneshot;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RecordType};
use tokio::sync::{Semaphore, mpsc};

use super::answer::{self, Failure};
use super::{DnsConfig, DnsError, IpLookup, MxLookup, Request, TxtLookup};

/// Starts the thread and waits until its resolver is built (or failed to build).
pub(super) fn spawn(
    config: DnsConfig,
    queue: mpsc::Receiver<Request>,
    stopped: oneshot::Receiver<()>,
) -> Result<(), DnsError> {
    let (ready, started) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("dns".into())
        .spawn(move || run(config, queue, stopped, ready))
        .map_err(|e| DnsError(format!("cannot start the DNS thread: {e}")))?;
    started
        .recv()
        .unwrap_or_else(|_| Err(DnsError("the DNS thread died while starting".into())))
}

fn run(
    config: DnsConfig,
    queue: mpsc::Receiver<Request>,
    stopped: oneshot::Receiver<()>,
    ready: std::sync::mpsc::SyncSender<Result<(), DnsError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(DnsError(format!("cannot build a tokio runtime: {e}"))));
            return;
        }
    };
    runtime.block_on(async move {
        // Built inside the runtime: hickory captures the current tokio handle.
        let resolver = match build_resolver(&config) {
            Ok(resolver) => resolver,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        serve(resolver, &config, queue, stopped).await;
    });
    // Dropping the runtime drops the lookups still running and the queue drops the requests
    // still waiting: their callers' oneshots are cancelled and they answer TempFail.
}

fn build_resolver(config: &DnsConfig) -> Result<TokioResolver, DnsError> {
    let explicit = !config.nameservers.is_empty();
    let name_servers = if explicit {
        config
            .nameservers
            .iter()
            .map(|addr| {
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                server
            })
            .collect()
    } else {
        let (system, _) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| DnsError(format!("system configuration (/etc/resolv.conf): {e}")))?;
        // Only the servers: its search list and domain would rewrite names.
        system.name_servers().to_vec()
    };
    let servers = ResolverConfig::from_parts(None, Vec::new(), name_servers);
    TokioResolver::builder_with_config(servers, TokioRuntimeProvider::default())
        .with_options(resolver_options(config, explicit))
        .build()
        .map_err(|e| DnsError(format!("cannot build the resolver: {e}")))
}

fn resolver_options(config: &DnsConfig, explicit_servers: bool) -> ResolverOpts {
    let mut options = ResolverOpts::default();
    // Names are always sent fully qualified (see `name`); ndots 0 says the same.
    options.ndots = 0;
    options.timeout = config.timeout;
    // hickory counts retries after the first try.
    options.attempts = config.attempts.max(1) - 1;
    options.cache_size = config.cache_size as u64;
    // DKIM keys and long MX sets exceed 512 octets; without EDNS every one would need TCP.
    options.edns0 = true;
    options.use_hosts_file = if explicit_servers {
        ResolveHosts::Never
    } else {
        ResolveHosts::Auto
    };
    options
}

async fn serve(
    resolver: TokioResolver,
    config: &DnsConfig,
    mut queue: mpsc::Receiver<Request>,
    mut stopped: oneshot::Receiver<()>,
) {
    let deadline = config.lookup_deadline();
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    loop {
        let Some(Ok(permit)) =
            unless_stopped(&mut stopped, in_flight.clone().acquire_owned()).await
        else {
            return;
        };
        let Some(Some(request)) = unless_stopped(&mut stopped, queue.recv()).await else {
            return;
        };
        let resolver = resolver.clone();
        tokio::spawn(async move {
            answer(&resolver, request, deadline).await;
            drop(permit);
        });
    }
}

/// Runs `work` unless the stop signal comes first (`None`). The signal also fires when
/// every `Resolver` handle is gone.
async fn unless_stopped<T>(
    stopped: &mut oneshot::Receiver<()>,
    work: impl Future<Output = T>,
) -> Option<T> {
    let mut work = pin!(work);
    poll_fn(|cx| {
        if Pin::new(&mut *stopped).poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        work.as_mut().poll(cx).map(Some)
    })
    .await
}

async fn answer(resolver: &TokioResolver, request: Request, deadline: Duration) {
    // A caller that stopped waiting (its future was dropped) needs no lookup.
    match request {
        Request::Mx { name, reply } if !reply.is_canceled() => {
            let _ = reply.send(mx(resolver, name, deadline).await);
        }
        Request::Ips { name, reply } if !reply.is_canceled() => {
            let _ = reply.send(ips(resolver, name, deadline).await);
        }
        Request::Txt { name, reply } if !reply.is_canceled() => {
            let _ = reply.send(txt(resolver, name, deadline).await);
        }
        _ => {}
    }
}

async fn mx(resolver: &TokioResolver, name: Name, deadline: Duration) -> MxLookup {
    let result = query(resolver, name, RecordType::MX, deadline).await;
    answer::mx_answer(result.map(|lookup| answer::mx_records(&lookup)))
}

async fn ips(resolver: &TokioResolver, name: Name, deadline: Duration) -> IpLookup {
    // Both families at once: a slow AAAA must not double the wait.
    let v6 = tokio::spawn({
        let resolver = resolver.clone();
        let name = name.clone();
        async move {
            let result = query(&resolver, name, RecordType::AAAA, deadline).await;
            result.map(|lookup| answer::addresses(&lookup))
        }
    });
    let v4 = query(resolver, name, RecordType::A, deadline).await;
    let v4 = v4.map(|lookup| answer::addresses(&lookup));
    let v6 = v6
        .await
        .unwrap_or_else(|e| Err(Failure::Temporary(format!("AAAA lookup: {e}"))));
    answer::ip_answer(v4, v6)
}

async fn txt(resolver: &TokioResolver, name: Name, deadline: Duration) -> TxtLookup {
    let result = query(resolver, name, RecordType::TXT, deadline).await;
    answer::txt_answer(result.map(|lookup| answer::txt_strings(&lookup)))
}

/// One query through hickory (its cache first), cut off at `deadline` whatever happens.
async fn query(
    resolver: &TokioResolver,
    name: Name,
    record_type: RecordType,
    deadline: Duration,
) -> Result<Lookup, Failure> {
    match tokio::time::timeout(deadline, resolver.lookup(name, record_type)).await {
        Ok(Ok(lookup)) => Ok(lookup),
        Ok(Err(error)) => Err(Failure::of(&error)),
        Err(_) => Err(Failure::Temporary(format!(
            "no {record_type} answer within {deadline:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_never_rewrite_names_and_skip_hosts_with_explicit_servers() {
        let config = DnsConfig {
            timeout: Duration::from_millis(700),
            attempts: 3,
            cache_size: 10,
            ..DnsConfig::default()
        };
        let options = resolver_options(&config, true);
        assert_eq!(options.ndots, 0);
        assert_eq!(options.timeout, Duration::from_millis(700));
        assert_eq!(options.attempts, 2, "hickory counts retries");
        assert_eq!(options.cache_size, 10);
        assert_eq!(options.use_hosts_file, ResolveHosts::Never);
        assert_eq!(
            resolver_options(&config, false).use_hosts_file,
            ResolveHosts::Auto
        );
        let once = DnsConfig {
            attempts: 0,
            ..config
        };
        assert_eq!(resolver_options(&once, true).attempts, 0);
    }
}
