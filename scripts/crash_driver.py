#!/usr/bin/env python3
"""Crash harness for surel (Python 3 standard library only).

Each cycle runs mixed load against a real server -- SMTP delivery, IMAP APPEND / STORE /
UID EXPUNGE / UID MOVE, POP3 RETR / DELE / QUIT, and store compaction (a low background
threshold, small segments, and `surel store compact` from the command line) -- then SIGKILLs
the server at a random moment, sometimes a few milliseconds after asking for a compaction.
Then:

  1. `surel store check` on the killed store: no damage (a torn tail is allowed: start-up
     truncates it);
  2. the server is started (crash recovery) and every mailbox is read over IMAP and compared
     with what the clients were told: every acknowledged message present exactly once and
     byte-exact, nothing expunged comes back, UIDs strictly increasing and never reused,
     UIDNEXT never going back, UIDVALIDITY unchanged, acknowledged flags kept;
  3. the server is stopped cleanly and `surel store check` must report the store clean.

An operation whose reply the client did not get (the server died first) may or may not have
happened; the next verification settles it, and from then on it is as good as acknowledged.

The last line printed is a summary; the exit status is 0 only if no rule was broken.
Every wait is bounded: socket timeouts, process timeouts, and --max-seconds for the run.
"""

import argparse
import hashlib
import imaplib
import json
import os
import poplib
import random
import re
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

IMAP_ACCOUNTS = ["imap1@example.test", "imap2@example.test"]
POP_ACCOUNT = "pop1@example.test"
ACCOUNTS = IMAP_ACCOUNTS + [POP_ACCOUNT]
PASSWORD = "crash test password"
MAILBOXES = ["INBOX", "Archive"]
NET_TIMEOUT = 15
IGNORED_FLAGS = {"\\Seen", "\\Recent"}
CRASH_ID = re.compile(rb"X-Crash-Id: <([^>]+)>")


class Violation(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# The server process


class Server:
    def __init__(self, binary, work, cores):
        self.binary = binary
        self.work = work
        self.cores = cores
        self.data = os.path.join(work, "data")
        self.config = os.path.join(work, "surel.toml")
        self.log_path = os.path.join(work, "server.log")
        self.proc = None
        self.ports = {}
        os.makedirs(self.data, exist_ok=True)
        with open(self.config, "w") as f:
            f.write(
                f'hostname = "mx.crash.test"\n'
                f'data_dir = "{self.data}"\n'
                f"cores = {cores}\n"
                f'listen_address = "127.0.0.1"\n'
                f'local_domains = ["example.test"]\n'
                "[ports]\n"
                "smtp = 0\nsubmission = 0\nsubmissions = 0\npop3 = 0\npop3s = 0\nimap = 0\nimaps = 0\n"
                "[auth]\nallow_plaintext = true\nmax_pending_per_ip = 64\n"
                "[limits]\nmax_connections_per_ip = 1000\n"
                # Small segments and a low threshold, so compaction runs all the time.
                "[store]\nsegment_mb = 1\ncheckpoint_mb = 1\ncompact_dead_pct = 20\n"
            )

    def cli(self, *args, stdin=None, timeout=120):
        return subprocess.run(
            [self.binary, *args, "--data-dir", self.data],
            input=stdin,
            capture_output=True,
            timeout=timeout,
        )

    def add_users(self):
        for account in ACCOUNTS:
            out = self.cli("user", "add", account, "--password-stdin", stdin=PASSWORD.encode())
            if out.returncode != 0:
                raise Violation(f"user add {account}: {out.stderr.decode()}")

    def start(self, within=60):
        ports_file = os.path.join(self.data, "ports")
        try:
            os.remove(ports_file)
        except FileNotFoundError:
            pass
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", self.config],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Violation(f"server exited at start-up ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with open(ports_file) as f:
                    ports = dict(line.split(" ", 1) for line in f.read().splitlines() if " " in line)
                if all(p in ports for p in ("smtp", "imap", "pop3")):
                    self.ports = {k: int(v.rsplit(":", 1)[1]) for k, v in ports.items()}
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        raise Violation(f"server not listening within {within}s:\n{self.log_tail()}")

    def kill(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.proc = None

    def stop(self, within=60):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Violation(f"server did not stop within {within}s of SIGTERM")
        self.proc = None
        if code != 0:
            raise Violation(f"server exit status {code} after SIGTERM:\n{self.log_tail()}")

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def log_count(self, needle):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().count(needle.encode())
        except OSError:
            return 0


# ---------------------------------------------------------------------------------------------
# What the clients were told: the model every verification is checked against


class Copy:
    """One message in one mailbox."""

    def __init__(self, mid, kind, sent):
        self.id = mid
        self.kind = kind  # "smtp": stored = trace header fields + sent; "append": stored == sent
        self.sent = sent  # dropped once the stored bytes are known (sha)
        self.state = "maybe"  # "present" | "absent" | "maybe"
        self.uid = None
        self.sha = None  # of the stored bytes, once seen
        self.flags = set()  # acknowledged (or seen after a restart)
        self.maybe_flags = set()  # asked for, answer not seen
        # Set when another client acted on the message before its own acknowledgement was
        # read (a POP3 session can delete a delivery before the SMTP client sees the 250).
        self.overtaken = False


class Model:
    def __init__(self):
        self.lock = threading.RLock()
        # (account, mailbox) -> {id: Copy} of messages that are or may be there
        self.boxes = {(a, m): {} for a in ACCOUNTS for m in MAILBOXES}
        # (account, mailbox) -> ids known to be gone from there for good
        self.gone = {(a, m): set() for a in ACCOUNTS for m in MAILBOXES}
        self.uid_history = {}  # (account, mailbox) -> {uid: id}
        self.max_uid = {}  # (account, mailbox) -> largest uid at the last verification
        self.uidnext = {}
        self.uidvalidity = {}
        self.counter = 0
        self.totals = {
            "acknowledged": 0,  # deliveries and appends the client was told are stored
            "unacknowledged": 0,
            "acked_flag_changes": 0,
            "acked_expunges": 0,
            "acked_moves": 0,
            "acked_pop3_deletes": 0,
            "lost": 0,
            "duplicated": 0,
            "resurrected": 0,
            "violations": 0,
        }
        self.problems = []

    def new_id(self, prefix):
        with self.lock:
            self.counter += 1
            return f"{prefix}{self.counter}-{os.getpid()}"

    def begin(self, account, mailbox, mid, kind, sent):
        with self.lock:
            c = Copy(mid, kind, sent)
            self.boxes[(account, mailbox)][mid] = c
            self.totals["unacknowledged"] += 1
            return c

    def acked(self, c, uid=None):
        with self.lock:
            if not c.overtaken:
                c.state = "present"
            if uid is not None:
                c.uid = uid
            self.totals["acknowledged"] += 1
            self.totals["unacknowledged"] -= 1

    def get(self, account, mailbox, mid):
        with self.lock:
            return self.boxes[(account, mailbox)].get(mid)

    def present(self, account, mailbox):
        """Present copies with a known UID."""
        with self.lock:
            return [
                c
                for c in self.boxes[(account, mailbox)].values()
                if c.state == "present" and c.uid is not None
            ]

    def problem(self, text):
        with self.lock:
            self.totals["violations"] += 1
            if len(self.problems) < 200:
                self.problems.append(text)
        print(f"VIOLATION: {text}", flush=True)


def make_message(mid, rng):
    """A message whose bytes depend only on its id; some lines start with '.'."""
    r = random.Random(mid)
    size = 1_300_000 if rng.random() < 0.01 else r.choice([200, 900, 3000, 12000, 40000])
    head = (
        f"From: load@crash.test\r\nTo: someone@example.test\r\nSubject: crash {mid}\r\n"
        f"Message-ID: <{mid}@crash.test>\r\nX-Crash-Id: <{mid}>\r\n\r\n"
    ).encode()
    words = ["alpha", "beta", "gamma", ".dot", "..two", "delta", "epsilon", "z" * 30]
    lines = []
    total = len(head)
    while total < size:
        line = " ".join(r.choice(words) for _ in range(r.randint(1, 8)))
        if r.random() < 0.1:
            line = "." + line
        lines.append(line)
        total += len(line) + 2
    return head + ("\r\n".join(lines) + "\r\n").encode()


# ---------------------------------------------------------------------------------------------
# Load


class Load:
    def __init__(self, server, model, rng, stop):
        self.server = server
        self.model = model
        self.rng = rng
        self.stop = stop
        self.compactions_asked = 0

    def smtp(self, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.server.ports["smtp"], timeout=NET_TIMEOUT) as s:
                    for _ in range(rng.randint(1, 30)):
                        if self.stop.is_set():
                            return
                        to = rng.choice(ACCOUNTS)
                        mid = self.model.new_id("s")
                        msg = make_message(mid, rng)
                        c = self.model.begin(to, "INBOX", mid, "smtp", msg)
                        s.sendmail("load@crash.test", [to], msg)
                        self.model.acked(c)
            except (OSError, smtplib.SMTPException, EOFError):
                time.sleep(0.01)

    def imap(self, account, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            try:
                m = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=NET_TIMEOUT)
                try:
                    m.login(account, PASSWORD)
                    for _ in range(rng.randint(5, 40)):
                        if self.stop.is_set():
                            return
                        self.imap_op(m, account, rng)
                finally:
                    try:
                        m.logout()
                    except Exception:
                        pass
            except (OSError, imaplib.IMAP4.error, EOFError):
                time.sleep(0.01)

    def imap_op(self, m, account, rng):
        inbox = self.model.present(account, "INBOX")
        op = rng.choices(
            ["append", "store", "expunge", "move", "learn"],
            weights=[3, 3, 6 if len(inbox) > 60 else 2, 2, 1],
        )[0]
        if op == "append":
            mailbox = rng.choice(MAILBOXES)
            mid = self.model.new_id("a")
            msg = make_message(mid, rng)
            c = self.model.begin(account, mailbox, mid, "append", msg)
            typ, data = m.append(mailbox, None, None, msg)
            if typ != "OK":
                return
            found = re.search(rb"APPENDUID (\d+) (\d+)", data[0] or b"")
            uid = int(found.group(2)) if found else None
            if found and int(found.group(1)) != self.model.uidvalidity.get((account, mailbox)):
                self.model.problem(f"{account}/{mailbox}: APPENDUID with another UIDVALIDITY: {data}")
            self.model.acked(c, uid)
            return
        if op == "learn":
            for mailbox in MAILBOXES:
                self.learn_uids(m, account, mailbox)
            return
        mailbox = "INBOX" if op == "move" else rng.choice(MAILBOXES)
        targets = self.model.present(account, mailbox)
        if not targets:
            return
        typ, _ = m.select(mailbox)
        if typ != "OK":
            return
        if op == "store":
            c = rng.choice(targets)
            flag = rng.choice(["\\Flagged", "\\Answered", "$Crash%d" % rng.randint(1, 5)])
            with self.model.lock:
                c.maybe_flags.add(flag)
            typ, _ = m.uid("STORE", str(c.uid), "+FLAGS", f"({flag})")
            if typ == "OK":
                with self.model.lock:
                    if c.state == "present":
                        c.flags.add(flag)
                    self.model.totals["acked_flag_changes"] += 1
        elif op == "expunge":
            chosen = rng.sample(targets, min(len(targets), rng.randint(1, 12)))
            uids = ",".join(str(c.uid) for c in chosen)
            with self.model.lock:
                for c in chosen:
                    c.maybe_flags.add("\\Deleted")
            typ, _ = m.uid("STORE", uids, "+FLAGS.SILENT", "(\\Deleted)")
            if typ != "OK":
                return
            with self.model.lock:
                for c in chosen:
                    c.flags.add("\\Deleted")
                    c.state = "maybe"
            # UID EXPUNGE (UIDPLUS): never a plain EXPUNGE or CLOSE, which would also remove
            # messages whose \Deleted an earlier, unanswered STORE may have set.
            typ, _ = m._simple_command("UID", "EXPUNGE", uids)
            if typ == "OK":
                with self.model.lock:
                    for c in chosen:
                        c.state = "absent"
                    self.model.totals["acked_expunges"] += len(chosen)
        elif op == "move":
            c = rng.choice(targets)
            with self.model.lock:
                archive = self.model.boxes[(account, "Archive")]
                if c.id in archive:
                    return  # an unanswered move left a copy there: one copy per mailbox
                dest = Copy(c.id, c.kind, c.sent)
                dest.sha = c.sha
                dest.flags = set(c.flags)
                dest.maybe_flags = set(c.maybe_flags)
                archive[c.id] = dest
                self.model.gone[(account, "Archive")].discard(c.id)
                c.state = "maybe"
            typ, _ = m.uid("MOVE", str(c.uid), "Archive")
            if typ == "OK":
                with self.model.lock:
                    c.state = "absent"
                    dest.state = "present"
                    self.model.totals["acked_moves"] += 1

    def learn_uids(self, m, account, mailbox):
        """Learns the UIDs of messages delivered meanwhile, so later operations can use them."""
        typ, data = m.select(mailbox)
        if typ != "OK" or int(data[0]) == 0:
            return
        typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (X-Crash-Id)])")
        if typ != "OK":
            return
        for item in data:
            if not isinstance(item, tuple):
                continue
            uid = re.search(rb"UID (\d+)", item[0])
            mid = CRASH_ID.search(item[1])
            if uid and mid:
                with self.model.lock:
                    c = self.model.boxes[(account, mailbox)].get(mid.group(1).decode())
                    if c is not None and c.uid is None:
                        c.uid = int(uid.group(1))

    def pop3(self, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            deleted = []
            try:
                p = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=NET_TIMEOUT)
                try:
                    p.user(POP_ACCOUNT)
                    p.pass_(PASSWORD)
                    _, listing, _ = p.list()
                    numbers = [int(line.split()[0]) for line in listing]
                    for n in rng.sample(numbers, min(len(numbers), rng.randint(0, 8))):
                        _, lines, _ = p.retr(n)
                        content = b"\r\n".join(lines) + b"\r\n"
                        mid = CRASH_ID.search(content)
                        if not mid:
                            self.model.problem(f"POP3 RETR {n}: no X-Crash-Id")
                            continue
                        mid = mid.group(1).decode()
                        c = self.model.get(POP_ACCOUNT, "INBOX", mid)
                        if c is None:
                            self.model.problem(f"POP3 RETR {n}: unknown message {mid}")
                            continue
                        if not stored_bytes_match(c, content):
                            self.model.problem(f"POP3 RETR of {mid}: not the stored bytes")
                        if rng.random() < 0.7:
                            with self.model.lock:
                                c.state = "maybe"
                                c.overtaken = True
                            p.dele(n)
                            deleted.append(c)
                    p.quit()
                    with self.model.lock:
                        for c in deleted:
                            c.state = "absent"
                        self.model.totals["acked_pop3_deletes"] += len(deleted)
                except BaseException:
                    try:
                        p.close()
                    except Exception:
                        pass
                    raise
            except (OSError, poplib.error_proto, EOFError):
                time.sleep(0.05)

    def compactor(self, seed):
        rng = random.Random(seed)
        while not self.stop.wait(rng.uniform(0.1, 0.8)):
            try:
                self.server.cli("store", "compact", "--dead-pct", str(rng.choice([0, 10, 30])), timeout=60)
                self.compactions_asked += 1
            except subprocess.TimeoutExpired:
                pass

    def run(self, seconds):
        """Runs the load for `seconds`, then SIGKILLs the server; returns after every worker
        stopped (bounded)."""
        workers = [threading.Thread(target=self.smtp, args=(self.rng.random(),)) for _ in range(2)]
        workers += [
            threading.Thread(target=self.imap, args=(a, self.rng.random())) for a in IMAP_ACCOUNTS
        ]
        workers.append(threading.Thread(target=self.pop3, args=(self.rng.random(),)))
        workers.append(threading.Thread(target=self.compactor, args=(self.rng.random(),)))
        for w in workers:
            w.daemon = True
            w.start()
        time.sleep(seconds)
        pending = None
        if self.rng.random() < 0.35:
            # Aim the kill at a compaction in progress.
            pending = subprocess.Popen(
                [self.server.binary, "store", "compact", "--dead-pct", "0", "--data-dir", self.server.data],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(self.rng.uniform(0.0, 0.08))
        self.server.kill()
        self.stop.set()
        if pending is not None:
            try:
                pending.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pending.kill()
        deadline = time.monotonic() + 3 * NET_TIMEOUT
        for w in workers:
            w.join(timeout=max(0.1, deadline - time.monotonic()))
        stuck = [w for w in workers if w.is_alive()]
        if stuck:
            raise Violation(f"{len(stuck)} load threads still blocked after the kill")


# ---------------------------------------------------------------------------------------------
# Verification


def fetch_mailbox(m, account, mailbox):
    """(uidvalidity, uidnext, {uid: (flags, bytes)}) of one mailbox, read-only."""
    typ, data = m.select(mailbox, readonly=True)
    if typ != "OK":
        raise Violation(f"{account}: EXAMINE {mailbox} failed: {data}")
    exists = int(data[0])
    uidvalidity = int(m.response("UIDVALIDITY")[1][0])
    uidnext = int(m.response("UIDNEXT")[1][0])
    out = {}
    if exists == 0:
        return uidvalidity, uidnext, out
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS)")
    if typ != "OK":
        raise Violation(f"{account}/{mailbox}: UID FETCH FLAGS failed")
    flags = {}
    for item in data:
        line = item[0] if isinstance(item, tuple) else item
        uid = re.search(rb"UID (\d+)", line or b"")
        fl = re.search(rb"FLAGS \(([^)]*)\)", line or b"")
        if uid and fl:
            flags[int(uid.group(1))] = set(fl.group(1).decode().split())
    typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
    if typ != "OK":
        raise Violation(f"{account}/{mailbox}: UID FETCH BODY failed")
    for item in data:
        if not isinstance(item, tuple):
            continue
        uid = re.search(rb"UID (\d+)", item[0])
        if not uid:
            raise Violation(f"{account}/{mailbox}: FETCH response without UID: {item[0][:80]!r}")
        uid = int(uid.group(1))
        if uid in out:
            raise Violation(f"{account}/{mailbox}: UID {uid} twice in one FETCH")
        out[uid] = (flags.get(uid, set()) - IGNORED_FLAGS, item[1])
    if len(out) != exists:
        raise Violation(f"{account}/{mailbox}: {exists} messages, {len(out)} fetched")
    return uidvalidity, uidnext, out


def verify(server, model, first=False):
    for account in ACCOUNTS:
        m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=NET_TIMEOUT)
        try:
            m.login(account, PASSWORD)
            for mailbox in MAILBOXES:
                verify_mailbox(model, account, mailbox, *fetch_mailbox(m, account, mailbox), first)
        finally:
            try:
                m.logout()
            except Exception:
                pass


def verify_mailbox(model, account, mailbox, uidvalidity, uidnext, seen, first):
    key = (account, mailbox)
    where = f"{account}/{mailbox}"
    with model.lock:
        if first:
            model.uidvalidity[key] = uidvalidity
        elif model.uidvalidity.get(key) != uidvalidity:
            model.problem(f"{where}: UIDVALIDITY {model.uidvalidity.get(key)} became {uidvalidity}")
        if uidnext < model.uidnext.get(key, 0):
            model.problem(f"{where}: UIDNEXT went back from {model.uidnext[key]} to {uidnext}")
        if seen and uidnext <= max(seen):
            model.problem(f"{where}: UIDNEXT {uidnext} not above UID {max(seen)}")
        history = model.uid_history.setdefault(key, {})
        prev_max = model.max_uid.get(key, 0)
        by_id = {}
        for uid, (flags, data) in seen.items():
            found = CRASH_ID.search(data)
            if not found:
                model.problem(f"{where}: UID {uid} has no X-Crash-Id")
                continue
            mid = found.group(1).decode()
            by_id.setdefault(mid, []).append(uid)
            if history.get(uid, mid) != mid:
                model.problem(f"{where}: UID {uid} was {history[uid]}, now {mid} (UID reused)")
            if uid not in history and uid <= prev_max:
                model.problem(f"{where}: new message {mid} got UID {uid}, not above {prev_max}")
            c = model.boxes[key].get(mid)
            if c is None or c.state == "absent":
                if c is not None or mid in model.gone[key]:
                    model.totals["resurrected"] += 1
                    model.problem(f"{where}: {mid} (UID {uid}) was expunged and is back")
                else:
                    model.problem(f"{where}: UID {uid} holds {mid}, which was never put here")
                continue
            if c.uid is not None and c.uid != uid:
                model.problem(f"{where}: {mid} was UID {c.uid}, now UID {uid}")
            if not stored_bytes_match(c, data):
                model.problem(f"{where}: {mid} (UID {uid}): not the bytes acknowledged (or they changed)")
            missing = c.flags - flags
            unexpected = flags - c.flags - c.maybe_flags
            if missing:
                model.problem(f"{where}: {mid} lost acknowledged flags {sorted(missing)}")
            if unexpected:
                model.problem(f"{where}: {mid} has flags nobody set: {sorted(unexpected)}")
            c.uid, c.flags, c.maybe_flags = uid, set(flags), set()
            c.sha, c.sent = hashlib.sha256(data).hexdigest(), None
            c.state = "present"
            history[uid] = mid
        for mid, uids in by_id.items():
            if len(uids) > 1:
                model.totals["duplicated"] += len(uids) - 1
                model.problem(f"{where}: {mid} is there {len(uids)} times (UIDs {uids})")
        box = model.boxes[key]
        for mid in [mid for mid in box if mid not in by_id]:
            c = box.pop(mid)
            if c.state == "present":
                model.totals["lost"] += 1
                model.problem(f"{where}: acknowledged message {mid} (UID {c.uid}) is missing")
            model.gone[key].add(mid)
        model.max_uid[key] = max([prev_max, *seen.keys()])
        model.uidnext[key] = uidnext


def stored_bytes_match(c, data):
    """Whether `data` can be the stored bytes of copy `c`: the same as seen before, or else
    what the client sent (an SMTP delivery gains trace headers in front)."""
    if c.sha is not None:
        return hashlib.sha256(data).hexdigest() == c.sha
    if c.kind == "append":
        return data == c.sent
    # Return-Path, Delivered-To and Received come first.
    trace = data[: len(data) - len(c.sent)]
    return data.endswith(c.sent) and b"Received: " in trace and trace.endswith(b"\r\n")


def store_check(server, allow_torn_tail):
    out = server.cli("store", "check", timeout=300)
    text = out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
    if out.returncode == 0:
        return
    findings = [l for l in text.splitlines() if l.startswith(("DAMAGE", "torn tail"))]
    if allow_torn_tail and findings and all(l.startswith("torn tail") for l in findings):
        return
    raise Violation(f"surel store check is not clean:\n{text}")


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--surel", required=True, help="the surel binary")
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--work", help="working directory (default: a new temporary one)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=3600, help="stop starting cycles after this")
    ap.add_argument("--load-min", type=float, default=0.3, help="shortest load phase, seconds")
    ap.add_argument("--load-max", type=float, default=3.0, help="longest load phase, seconds")
    args = ap.parse_args()

    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    work = args.work or tempfile.mkdtemp(prefix="surel-crash.")
    os.makedirs(work, exist_ok=True)
    server = Server(os.path.abspath(args.surel), work, args.cores)
    model = Model()
    started = time.monotonic()
    cycles = 0
    compactions_asked = 0
    failure = None
    print(f"crash-test: seed {seed}, work dir {work}", flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        server.add_users()
        server.start()
        # Every account gets its mailboxes with its first delivery.
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=NET_TIMEOUT) as s:
            for account in ACCOUNTS:
                mid = model.new_id("s")
                msg = make_message(mid, rng)
                c = model.begin(account, "INBOX", mid, "smtp", msg)
                s.sendmail("load@crash.test", [account], msg)
                model.acked(c)
        verify(server, model, first=True)
        while cycles < args.cycles and time.monotonic() - started < args.max_seconds:
            load = Load(server, model, rng, threading.Event())
            load.run(rng.uniform(args.load_min, args.load_max))
            compactions_asked += load.compactions_asked
            store_check(server, allow_torn_tail=True)
            server.start()
            verify(server, model)
            server.stop()
            store_check(server, allow_torn_tail=False)
            cycles += 1
            if model.totals["violations"]:
                break
            if cycles % 10 == 0 or cycles == args.cycles:
                t = model.totals
                print(
                    f"cycle {cycles}: acknowledged {t['acknowledged']}, lost {t['lost']}, "
                    f"duplicated {t['duplicated']}, {time.monotonic() - started:.0f}s",
                    flush=True,
                )
            server.start()
    except Violation as e:
        model.problem(str(e))
        failure = str(e)
    except KeyboardInterrupt:
        failure = "interrupted"
    finally:
        try:
            server.kill()
        except Exception:
            pass

    totals = dict(model.totals)
    totals.update(
        cycles=cycles,
        seed=seed,
        seconds=round(time.monotonic() - started, 1),
        compaction_requests=compactions_asked,
        segments_compacted=server.log_count("segment compacted"),
        interrupted_compactions_cleaned=server.log_count("interrupted compaction"),
        full_replays_after_compaction=server.log_count("checkpoint does not match"),
    )
    for p in model.problems[:20]:
        print(f"  {p}", file=sys.stderr)
    ok = failure is None and totals["violations"] == 0 and cycles > 0
    print(
        "crash-test summary: "
        + ("PASS" if ok else "FAIL")
        + f" cycles={cycles} acknowledged={totals['acknowledged']} lost={totals['lost']} "
        f"duplicated={totals['duplicated']} resurrected={totals['resurrected']} "
        f"violations={totals['violations']} segments_compacted={totals['segments_compacted']} "
        f"interrupted_compactions={totals['interrupted_compactions_cleaned']}"
    )
    print("crash-test json: " + json.dumps(totals), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
