//! Latency histograms, per-second timeline, summary table and JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest trackable latency: one hour in microseconds.
const MAX_US: u64 = 3_600_000_000;

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("histogram bounds")
}

/// Counters and latencies accumulated by one worker between two reports.
#[derive(Clone)]
pub struct Delta {
    /// Completed jobs (SMTP: messages accepted; POP3/IMAP: sessions completed).
    pub ok: u64,
    pub failed: u64,
    /// Messages delivered (SMTP) or fetched (POP3/IMAP).
    pub msgs: u64,
    /// Message bytes delivered or fetched.
    pub bytes: u64,
    pub errors: BTreeMap<String, u64>,
    pub hist: Histogram<u64>,
    /// For `--verify`: (message number, accepted 1-based user indexes).
    pub delivered: Vec<(u64, Vec<u64>)>,
}

impl Default for Delta {
    fn default() -> Self {
        Delta {
            ok: 0,
            failed: 0,
            msgs: 0,
            bytes: 0,
            errors: BTreeMap::new(),
            hist: new_hist(),
            delivered: Vec::new(),
        }
    }
}

impl Delta {
    pub fn record_ok(&mut self, latency: Duration, msgs: u64, bytes: u64) {
        self.ok += 1;
        self.msgs += msgs;
        self.bytes += bytes;
        self.hist
            .saturating_record((latency.as_micros() as u64).clamp(1, MAX_US));
    }
    /// Count a completed job without a latency sample (e2e: latency comes from the watcher).
    pub fn record_count(&mut self, msgs: u64, bytes: u64) {
        self.ok += 1;
        self.msgs += msgs;
        self.bytes += bytes;
    }
    pub fn record_latency(&mut self, latency: Duration) {
        self.hist
            .saturating_record((latency.as_micros() as u64).clamp(1, MAX_US));
    }
    pub fn record_err(&mut self, key: String) {
        self.failed += 1;
        *self.errors.entry(key).or_default() += 1;
    }
    /// Count a non-fatal problem (e.g. one rejected recipient) without failing the job.
    pub fn note(&mut self, key: String) {
        *self.errors.entry(key).or_default() += 1;
    }
    pub fn is_empty(&self) -> bool {
        self.ok == 0
            && self.failed == 0
            && self.hist.is_empty()
            && self.errors.is_empty()
            && self.delivered.is_empty()
    }
    pub fn merge(&mut self, o: &Delta) {
        self.ok += o.ok;
        self.failed += o.failed;
        self.msgs += o.msgs;
        self.bytes += o.bytes;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        let _ = self.hist.add(&o.hist);
    }
}

#[derive(Serialize, Clone, Debug)]
pub struct Second {
    pub t: u64,
    pub ok: u64,
    pub failed: u64,
    pub msgs: u64,
    pub bytes: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Latency {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn from_hist(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Cpu {
    pub user_s: f64,
    pub sys_s: f64,
    pub total_s: f64,
    /// Client CPU time as % of one core over the wall-clock duration.
    pub pct_of_one_core: f64,
}

/// Process CPU time (user, system) from getrusage(RUSAGE_SELF).
pub fn rusage() -> (f64, f64) {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return (0.0, 0.0);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct VerifyReport {
    pub via: String,
    pub expected: u64,
    pub found: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub foreign: u64,
    pub examples: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.corrupted == 0
    }
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Summary {
    pub protocol: String,
    pub target: String,
    pub run_id: String,
    pub cores: usize,
    pub connections: usize,
    /// "closed" or "open".
    pub load_model: String,
    pub rate: Option<f64>,
    pub driver: String,
    pub duration_s: f64,
    /// What one job is: "message" (smtp) or "session" (pop3/imap).
    pub job: String,
    pub jobs_ok: u64,
    pub jobs_failed: u64,
    pub jobs_per_s: f64,
    pub messages: u64,
    pub messages_per_s: f64,
    pub bytes: u64,
    pub mb_per_s: f64,
    pub errors: BTreeMap<String, u64>,
    pub latency: Latency,
    pub cpu: Cpu,
    pub timeline: Vec<Second>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyReport>,
    /// `loadgen hold`: connections held idle and the memory they cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<crate::hold::HoldReport>,
}

fn fmt_us(us: u64) -> String {
    if us >= 10_000_000 {
        format!("{:.1} s", us as f64 / 1e6)
    } else if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{us} µs")
    }
}

impl Summary {
    pub fn table(&self) -> String {
        let mut s = String::new();
        let model = match self.rate {
            Some(r) => format!("open loop {r} {}/s", self.job),
            None if self.hold.is_some() => "hold".into(),
            None => "closed loop".into(),
        };
        s += &format!(
            "\nloadgen {} -> {}  run {}  ({} cores, {} connections, {}, {} driver)\n",
            self.protocol,
            self.target,
            self.run_id,
            self.cores,
            self.connections,
            model,
            self.driver
        );
        s += &format!("  duration      {:>12.2} s\n", self.duration_s);
        if let Some(h) = &self.hold {
            s += &h.table();
        } else if self.job == "message" {
            s += &format!(
                "  messages      {:>12} ok   {:>8} failed   {:>10.1} msg/s\n",
                self.jobs_ok, self.jobs_failed, self.messages_per_s
            );
        } else {
            s += &format!(
                "  {:<13} {:>12} ok   {:>8} failed   {:>10.1} /s\n",
                format!("{}s", self.job),
                self.jobs_ok,
                self.jobs_failed,
                self.jobs_per_s
            );
            s += &format!(
                "  messages      {:>12} fetched       {:>10.1} msg/s\n",
                self.messages, self.messages_per_s
            );
        }
        if self.hold.is_none() {
            s += &format!(
                "  data          {:>12.2} MB   {:>10.2} MB/s\n",
                self.bytes as f64 / 1e6,
                self.mb_per_s
            );
        }
        let l = &self.latency;
        s += &format!(
            "  {:<13} p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {:.0} µs, n={})\n",
            if self.protocol == "e2e" {
                "250->EXISTS"
            } else if self.hold.is_some() {
                "conn->IDLE"
            } else {
                "latency"
            },
            fmt_us(l.p50_us),
            fmt_us(l.p90_us),
            fmt_us(l.p99_us),
            fmt_us(l.p999_us),
            fmt_us(l.max_us),
            l.mean_us,
            l.count
        );
        if self.errors.is_empty() {
            s += "  errors        none\n";
        } else {
            let e: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            s += &format!("  errors        {}\n", e.join(", "));
        }
        s += &format!(
            "  client CPU    {:.2} s (user {:.2} + sys {:.2}) = {:.1} % of one core\n",
            self.cpu.total_s, self.cpu.user_s, self.cpu.sys_s, self.cpu.pct_of_one_core
        );
        if let Some(v) = &self.verify {
            let verdict = if v.ok() { "OK" } else { "FAILED" };
            s += &format!(
                "  verify        {verdict} via {}: expected {} found {} | LOST {} DUPLICATED {} CORRUPTED {} (other runs' messages ignored: {})\n",
                v.via, v.expected, v.found, v.lost, v.duplicated, v.corrupted, v.foreign
            );
            for e in &v.examples {
                s += &format!("                {e}\n");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_merge_and_latency() {
        let mut a = Delta::default();
        for us in 1..=1000u64 {
            a.record_ok(Duration::from_micros(us), 1, 10);
        }
        let mut b = Delta::default();
        b.record_err("550".into());
        b.record_err("550".into());
        b.note("io".into());
        a.merge(&b);
        assert_eq!((a.ok, a.failed, a.msgs, a.bytes), (1000, 2, 1000, 10_000));
        assert_eq!(a.errors["550"], 2);
        assert_eq!(a.errors["io"], 1);
        let l = Latency::from_hist(&a.hist);
        assert!((495..=505).contains(&l.p50_us), "{}", l.p50_us);
        assert!((985..=995).contains(&l.p99_us), "{}", l.p99_us);
        assert_eq!(l.max_us, 1000);
        let s = Summary {
            latency: l,
            errors: a.errors.clone(),
            ..Default::default()
        };
        assert!(s.table().contains("550: 2"));
        let j = serde_json::to_string(&s).unwrap();
        assert!(j.contains("\"p99_us\""));
    }
}
