#!/usr/bin/env python3
"""Side-by-side audio-mixing benchmark: Janus AudioBridge vs this project's `mode=mix`.

One scenario, two servers, one run: N plain-RTP participants in one mixed room, K of them
talkers sending a 20 ms Opus tone, the rest silent listeners, for D seconds. The same Python
driver (one process, one UDP socket per participant) sends the same pre-encoded Opus packets
to both servers; only the signalling differs (Janus HTTP API vs the project's TAB-line
control protocol). Each server's CPU is read from /proc/PID/stat (utime+stime) over the
steady window. Loopback only. Python standard library only; ffmpeg encodes the Opus once.

Run through run.sh; `python3 bench.py --help` lists the options.
"""

import argparse
import json
import os
import random
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PT = 111
FRAME_S = 0.020
TS_STEP = 960  # 20 ms at 48 kHz


def log(*a):
    print("[ab]", *a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- Opus capture

def rtp_payload(pkt):
    """Payload of an RTP packet (None for RTCP / other payload types)."""
    if len(pkt) < 12 or (pkt[0] >> 6) != 2:
        return None
    if (pkt[1] & 0x7F) != PT:
        return None
    cc = pkt[0] & 0x0F
    off = 12 + 4 * cc
    if pkt[0] & 0x10:  # extension
        if len(pkt) < off + 4:
            return None
        xlen = struct.unpack("!H", pkt[off + 2:off + 4])[0]
        off += 4 + 4 * xlen
    end = len(pkt)
    if pkt[0] & 0x20:  # padding
        end -= pkt[-1]
    return bytes(pkt[off:end])


def capture_opus(lavfi, seconds, bitrate):
    """Encode `seconds` of a lavfi source to Opus RTP with ffmpeg and return the payloads."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", lavfi,
           "-t", str(seconds), "-ac", "1", "-c:a", "libopus", "-b:a", bitrate,
           "-frame_duration", "20", "-application", "voip", "-payload_type", str(PT),
           "-ssrc", "1111", "-f", "rtp", f"rtp://127.0.0.1:{port}?pkt_size=1200&rtcpport={port}"]
    # -re keeps ffmpeg from bursting thousands of datagrams faster than we read them.
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rx.settimeout(0.5)
    out = []
    deadline = time.time() + seconds + 15
    while time.time() < deadline:
        try:
            pkt = rx.recv(2048)
        except socket.timeout:
            if p.poll() is not None:
                break
            continue
        pl = rtp_payload(pkt)
        if pl:
            out.append(pl)
    p.wait(timeout=5)
    err = p.stderr.read().decode(errors="replace")
    rx.close()
    need = int(seconds / FRAME_S) - 2
    if len(out) < need:
        raise SystemExit(f"ffmpeg Opus capture got {len(out)} packets (< {need}) for {lavfi}: {err}")
    return out


# --------------------------------------------------------------------------- participants

class Participant:
    def __init__(self, idx, talker, frames):
        self.idx = idx
        self.name = f"p{idx}"
        self.talker = talker
        self.frames = frames  # list of Opus payloads to loop, or None (send nothing)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.dest = None  # where the server receives our RTP
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.n = 0
        self.sent = 0
        self.send_err = 0
        self.max_send = 0  # 0: no limit
        self.record = 0  # how many received payloads to keep for the content check
        # RFC 6464 audio level (extension id 1, one-byte header) on every packet, as WebRTC
        # clients and confclient send it: (voice flag, level in -dBov), or None for none.
        self.level = None
        self.reset_counters()

    def reset_counters(self):
        self.rx_pkts = 0
        self.rx_bytes = 0
        self.rx_payload = 0
        self.rx_ssrcs = set()
        self.recorded = []

    def next_packet(self):
        pl = self.frames[self.n % len(self.frames)]
        marker = 0x80 if self.n == 0 else 0
        b0 = 0x90 if self.level is not None else 0x80
        hdr = struct.pack("!BBHII", b0, marker | PT, self.seq & 0xFFFF,
                          self.ts & 0xFFFFFFFF, self.ssrc)
        if self.level is not None:
            voice, level = self.level
            hdr += struct.pack("!HHBBH", 0xBEDE, 1, 0x10, (0x80 if voice else 0) | level, 0)
        self.n += 1
        self.seq += 1
        self.ts += TS_STEP
        return hdr + pl

    def on_rx(self, pkt):
        self.rx_pkts += 1
        self.rx_bytes += len(pkt)
        pl = rtp_payload(pkt)
        if pl is not None:
            self.rx_payload += len(pl)
            self.rx_ssrcs.add(struct.unpack("!I", pkt[8:12])[0])
            if self.record and len(self.recorded) < self.record:
                self.recorded.append((struct.unpack("!H", pkt[2:4])[0], pl))


def make_participants(n, k, tone_frames, silence_frames, listener_media, audio_level=False):
    ps = []
    for i in range(n):
        talker = i < k
        if talker:
            frames = tone_frames[i % len(tone_frames)]
        else:
            frames = silence_frames if listener_media in ("silence", "once") else None
        p = Participant(i, talker, frames)
        if audio_level:
            # The tones are encoded at -18 dBFS; the silence is digital silence.
            p.level = (True, 18) if talker else (False, 127)
        if not talker and listener_media == "once":
            p.max_send = 1
        ps.append(p)
    return ps


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def proc_children_ticks(pids):
    t = 0
    for pid in pids:
        try:
            t += cpu_ticks(pid)
        except OSError:
            pass
    return t


def drive(ps, server_pid, duration, warmup, extra_poll=None):
    """Send 20 ms RTP from every sending participant, receive on all, for warmup+duration.
    Returns measurement dict of the steady window (after warmup)."""
    sel = selectors.DefaultSelector()
    for p in ps:
        sel.register(p.sock, selectors.EVENT_READ, p)
    senders = [p for p in ps if p.frames is not None and p.dest is not None]
    t0 = time.monotonic()
    next_tick = t0
    measuring = False
    m = {}
    end = t0 + warmup + duration
    late_ticks = 0
    ticks = 0
    while True:
        now = time.monotonic()
        if not measuring and now >= t0 + warmup:
            measuring = True
            for p in ps:
                p.reset_counters()
            m["srv0"] = cpu_ticks(server_pid)
            m["drv0"] = os.times()
            m["sent0"] = sum(p.sent for p in ps)
            m["t0"] = now
        if now >= end:
            break
        if now >= next_tick:
            if now - next_tick > FRAME_S:
                late_ticks += 1
            ticks += 1
            for p in senders:
                if p.max_send and p.sent >= p.max_send:
                    continue
                try:
                    p.sock.sendto(p.next_packet(), p.dest)
                    p.sent += 1
                except (BlockingIOError, OSError):
                    p.send_err += 1
            next_tick += FRAME_S
            if next_tick < now - 0.2:  # fell far behind: resync rather than burst
                next_tick = now + FRAME_S
        if extra_poll:
            extra_poll()
        timeout = max(0.0, min(next_tick, end) - time.monotonic())
        for key, _ in sel.select(timeout):
            p = key.data
            for _ in range(64):
                try:
                    pkt = p.sock.recv(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                p.on_rx(pkt)
    t1 = time.monotonic()
    srv1 = cpu_ticks(server_pid)
    drv1 = os.times()
    wall = t1 - m["t0"]
    sel.close()
    listeners = [p for p in ps if not p.talker]
    talkers = [p for p in ps if p.talker]
    exp = wall / FRAME_S

    def agg(group):
        if not group:
            return {}
        pk = [p.rx_pkts for p in group]
        pl = sum(p.rx_payload for p in group)
        return {
            "count": len(group),
            "rx_pkts_total": sum(pk),
            "rx_pkts_per_participant_per_s": round(sum(pk) / len(group) / wall, 2),
            "rx_min_pkts": min(pk),
            "rx_fraction_of_expected": round(sum(pk) / len(group) / exp, 4),
            "participants_receiving_nothing": sum(1 for x in pk if x == 0),
            "mean_rx_payload_bytes": round(pl / sum(pk), 1) if sum(pk) else 0,
        }

    return {
        "window_s": round(wall, 3),
        "server_cpu_cores": round((srv1 - m["srv0"]) / CLK_TCK / wall, 4),
        "driver_cpu_cores": round(((drv1.user - m["drv0"].user) + (drv1.system - m["drv0"].system)) / wall, 4),
        "sent_pkts_per_s": round((sum(p.sent for p in ps) - m["sent0"]) / wall, 1),
        "send_errors": sum(p.send_err for p in ps),
        "driver_late_ticks": late_ticks,
        "listeners": agg(listeners),
        "talkers": agg(talkers),
    }


# --------------------------------------------------------------------------- Janus

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_udp_range(width=1000):
    # A range well away from the kernel's ephemeral ports used by the driver's sockets.
    lo, hi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    for start in list(range(20000, lo - width, width)) + [10000]:
        ok = True
        for port in (start, start + width // 2, start + width - 1):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return start, start + width - 1
    return 20000, 20000 + width - 1


JANUS_ROOM = 1234


def write_janus_config(d, http_port, n):
    lo, hi = free_udp_range(max(1000, 4 * n))
    plugins_dir = "/usr/lib/x86_64-linux-gnu/janus/plugins"
    transports_dir = "/usr/lib/x86_64-linux-gnu/janus/transports"
    plugins = [f for f in os.listdir(plugins_dir) if f.endswith(".so") and f != "libjanus_audiobridge.so"]
    transports = [f for f in os.listdir(transports_dir) if f.endswith(".so") and f != "libjanus_http.so"]
    with open(os.path.join(d, "janus.jcfg"), "w") as f:
        f.write(f"""general: {{
	configs_folder = "{d}"
	plugins_folder = "{plugins_dir}"
	transports_folder = "{transports_dir}"
	events_folder = "/usr/lib/x86_64-linux-gnu/janus/events"
	loggers_folder = "/usr/lib/x86_64-linux-gnu/janus/loggers"
	debug_level = 3
	interface = "127.0.0.1"
	session_timeout = 120
	admin_secret = "unused-{random.getrandbits(48):x}"
	protected_folders = ["/bin", "/boot", "/dev", "/etc", "/initrd", "/lib", "/lib32", "/lib64", "/proc", "/sbin", "/sys", "/usr", "/var"]
}}
media: {{
	rtp_port_range = "{lo}-{hi}"
}}
nat: {{
	nice_debug = false
	ice_enforce_list = "lo"
	ignore_mdns = true
}}
plugins: {{
	disable = "{','.join(sorted(plugins))}"
}}
transports: {{
	disable = "{','.join(sorted(transports))}"
}}
loggers: {{
	disable = "libjanus_jsonlog.so"
}}
events: {{
	broadcast = false
}}
""")
    with open(os.path.join(d, "janus.transport.http.jcfg"), "w") as f:
        f.write(f"""general: {{
	json = "plain"
	base_path = "/janus"
	http = true
	ip = "127.0.0.1"
	port = {http_port}
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
""")
    with open(os.path.join(d, "janus.plugin.audiobridge.jcfg"), "w") as f:
        f.write(f"""general: {{
	rtp_port_range = "{lo}-{hi}"
	local_ip = "127.0.0.1"
	events = false
}}
room-{JANUS_ROOM}: {{
	description = "bench"
	sampling_rate = 48000
	allow_rtp_participants = true
	record = false
}}
""")
    return lo, hi


class JanusHTTP:
    def __init__(self, base):
        self.base = base
        self.tx = 0

    def _tid(self):
        self.tx += 1
        return f"t{self.tx}"

    def post(self, path, body, timeout=10):
        body = dict(body)
        body.setdefault("transaction", self._tid())
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def get(self, path, timeout=40):
        with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
            return json.loads(r.read())


def run_janus(args, ps, workdir):
    if not shutil.which("janus"):
        return {"error": "janus binary not found (apt-get install -y janus failed?)"}
    http_port = free_port()
    cfg = os.path.join(workdir, "janus")
    os.makedirs(cfg, exist_ok=True)
    lo, hi = write_janus_config(cfg, http_port, len(ps))
    logf = os.path.join(workdir, "janus.log")
    proc = subprocess.Popen(["janus", "-C", os.path.join(cfg, "janus.jcfg"), "-F", cfg, "-o",
                             "-L", logf, "-N"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    api = JanusHTTP(f"http://127.0.0.1:{http_port}/janus")
    result = {"pid": proc.pid, "log": logf, "rtp_port_range": f"{lo}-{hi}"}
    stop_poll = threading.Event()
    try:
        deadline = time.time() + 20
        while True:
            try:
                api.post("", {"janus": "info"}, timeout=2)
                break
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    tail = open(logf).read()[-2000:] if os.path.exists(logf) else ""
                    return {"error": f"janus did not start (rc={proc.poll()}): {tail}"}
                time.sleep(0.2)
        version = api.post("", {"janus": "info"}).get("version_string")
        result["version"] = version
        sess = api.post("", {"janus": "create"})["data"]["id"]
        handles = {}
        for p in ps:
            h = api.post(f"/{sess}", {"janus": "attach", "plugin": "janus.plugin.audiobridge"})["data"]["id"]
            handles[h] = p
            p.janus_handle = h
        # Join everyone; the `joined` events come through the long poll.
        pending = dict(handles)
        for h, p in handles.items():
            body = {"request": "join", "room": JANUS_ROOM, "display": p.name, "codec": "opus",
                    "rtp": {"ip": "127.0.0.1", "port": p.port, "payload_type": PT}}
            if args.janus_bitrate:
                body["bitrate"] = args.janus_bitrate
            if args.janus_quality:
                body["quality"] = args.janus_quality
            r = api.post(f"/{sess}/{h}", {"janus": "message", "body": body})
            if r.get("janus") == "error":
                return {**result, "error": f"join failed: {r}"}
        deadline = time.time() + 30
        while pending and time.time() < deadline:
            evs = api.get(f"/{sess}?maxev=50&rid={int(time.time()*1000)}", timeout=35)
            if isinstance(evs, dict):
                evs = [evs]
            for ev in evs:
                h = ev.get("sender")
                data = (ev.get("plugindata") or {}).get("data") or {}
                if h in pending and data.get("audiobridge") == "joined" and "rtp" in data:
                    rtp = data["rtp"]
                    pending.pop(h).dest = (rtp.get("ip") or "127.0.0.1", int(rtp["port"]))
                elif h in pending and data.get("error"):
                    return {**result, "error": f"join error: {data}"}
        if pending:
            return {**result, "error": f"{len(pending)} participants never got a joined event with rtp"}

        # Keep the session alive and drain events while media runs.
        def poller():
            while not stop_poll.is_set():
                try:
                    api.get(f"/{sess}?maxev=100&rid={int(time.time()*1000)}", timeout=35)
                except Exception:
                    time.sleep(0.5)
        threading.Thread(target=poller, daemon=True).start()
        log(f"janus {version}: {len(ps)} RTP participants joined room {JANUS_ROOM}; media for "
            f"{args.warmup}+{args.duration} s")
        m = drive(ps, proc.pid, args.duration, args.warmup)
        result.update(m)
        try:
            lst = api.post(f"/{sess}/{next(iter(handles))}", {"janus": "message", "body": {
                "request": "listparticipants", "room": JANUS_ROOM}})
            parts = lst.get("plugindata", {}).get("data", {}).get("participants", [])
            result["janus_participants_listed"] = len(parts)
        except Exception as e:
            result["janus_participants_listed"] = f"error {e}"
        try:
            api.post(f"/{sess}", {"janus": "destroy"}, timeout=3)
        except Exception:
            pass
        return result
    finally:
        stop_poll.set()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- this project

class Lines:
    """Blocking TAB-line reader over a TCP socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def read(self, timeout=10):
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode().rstrip("\r").split("\t")

    def send(self, *fields):
        self.sock.sendall(("\t".join(fields) + "\n").encode())


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h.strip("[]"), int(p)


def project_join(disp, conf, p):
    c = socket.create_connection(disp, timeout=10)
    lc = Lines(c)
    first = lc.read()
    if first[0] != "connect":
        raise RuntimeError(f"dispatcher greeting: {first}")
    lc.send("join", conf, "demo", p.name, "mode=mix", "media=audio", "codec=opus")
    while True:
        ln = lc.read()
        if ln[0] == "dispatch":
            ms, ticket = ln[1], ln[2]
            break
        if ln[0] in ("reject", "error"):
            raise RuntimeError(f"dispatcher: {ln}")
    try:
        lc.send("endsession")
    except OSError:
        pass
    c.close()
    m = socket.create_connection(hostport(ms), timeout=10)
    lm = Lines(m)
    first = lm.read()
    if first[0] != "connect":
        raise RuntimeError(f"media server greeting: {first}")
    lm.send("join", conf, "demo", p.name, "mode=mix", "media=audio", "codec=opus", f"ticket={ticket}")
    while True:
        ln = lm.read()
        if ln[0] in ("reject", "error"):
            raise RuntimeError(f"media server: {ln}")
        if ln[0] == "channel" and ln[1] == "audio":
            p.dest = hostport(ln[2])
            if ln[4] != "opus":
                raise RuntimeError(f"unexpected codec {ln}")
            p.ssrc = int(ln[5])
            break
    lm.send("channel", "audio", f"127.0.0.1:{p.port}", str(p.ssrc))
    m.setblocking(False)
    p.ctrl = m



def drive_confclients(args, ps, disp, conf, server_pid, workdir):
    """The project's own client as the driver: one `confclient` process per participant
    (talkers with --tone, listeners send Opus-encoded silence). Heavier than the Python
    driver; the server figure is still only noc's CPU."""
    cc = os.path.join(args.target, "confclient")
    if not os.access(cc, os.X_OK):
        return {"error": f"{cc} not built (cargo build --release --bins)"}
    freqs = [440, 660, 880, 550, 770, 990, 330, 1100]
    procs = []
    for p in ps:
        cmd = [cc, "--dispatcher", f"{disp[0]}:{disp[1]}", "--conference", conf, "--account", "demo",
               "--name", p.name, "--mode", "mix"]
        if p.talker:
            cmd += ["--tone", str(freqs[p.idx % len(freqs)])]
        outp = os.path.join(workdir, f"cc-{p.name}.out")
        procs.append((subprocess.Popen(cmd, stdout=open(outp, "w"), stderr=subprocess.DEVNULL), outp))
    deadline = time.time() + 60
    while time.time() < deadline:
        ready = sum(1 for _, o in procs if "\nchannel " in "\n" + open(o).read())
        if ready == len(procs):
            break
        time.sleep(0.2)
    else:
        for pr, _ in procs:
            pr.kill()
        return {"error": f"only {ready}/{len(procs)} confclients got a channel"}
    log(f"project noc: {len(ps)} confclient processes joined conference {conf} (mode=mix); media for "
        f"{args.warmup}+{args.duration} s")
    time.sleep(args.warmup)
    pids = [pr.pid for pr, _ in procs]
    t0 = time.monotonic()
    s0, c0 = cpu_ticks(server_pid), proc_children_ticks(pids)
    time.sleep(args.duration)
    s1, c1 = cpu_ticks(server_pid), proc_children_ticks(pids)
    wall = time.monotonic() - t0
    for pr, _ in procs:
        pr.terminate()
    recv = []
    for pr, o in procs:
        try:
            pr.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pr.kill()
            pr.wait()
        for line in open(o):
            if line.startswith("left "):
                kv = dict(x.split("=", 1) for x in line.split()[2:] if "=" in x)
                recv.append(int(kv.get("received", 0)))
    total = args.warmup + args.duration
    return {
        "driver": "confclient",
        "window_s": round(wall, 3),
        "server_cpu_cores": round((s1 - s0) / CLK_TCK / wall, 4),
        "driver_cpu_cores": round((c1 - c0) / CLK_TCK / wall, 4),
        "sent_pkts_per_s": None,
        "confclient_received_per_s_whole_session": round(sum(recv) / max(1, len(recv)) / total, 1) if recv else None,
        "confclients_reporting": len(recv),
        "listeners": {}, "talkers": {},
    }


def run_project(args, ps, workdir):
    noc = os.path.join(args.target, "noc")
    if not os.access(noc, os.X_OK):
        return {"error": f"{noc} not built"}
    logf = open(os.path.join(workdir, "noc.log"), "w")
    proc = subprocess.Popen([noc, "--listen", "127.0.0.1:0", "--media-servers", "1",
                             "--capacity", str(max(1000, 2 * len(ps)))],
                            stdout=subprocess.PIPE, stderr=logf, text=True)
    result = {"pid": proc.pid, "log": logf.name}
    disp = None
    mediaservers = []
    ctrl_socks = []
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                return {**result, "error": f"noc exited (rc={proc.poll()}) before ready; see {logf.name}"}
            w = line.split()
            if w and w[0] == "dispatcher":
                disp = hostport(w[1])
            elif w and w[0] == "mediaserver":
                mediaservers.append(w[1:])
            elif w and w[0] == "ready":
                break
        if disp is None:
            return {**result, "error": "noc printed no dispatcher line"}
        # Drain the rest of stdout so noc never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        result["dispatcher"] = f"{disp[0]}:{disp[1]}"
        result["mediaservers"] = [" ".join(x) for x in mediaservers]
        conf = f"ab{random.getrandbits(24):x}"
        if args.project_driver == "confclient":
            result.update(drive_confclients(args, ps, disp, conf, proc.pid, workdir))
            return result
        for p in ps:
            project_join(disp, conf, p)
            ctrl_socks.append(p.ctrl)
        log(f"project noc: {len(ps)} participants joined conference {conf} (mode=mix); media for "
            f"{args.warmup}+{args.duration} s")
        ctrl_bytes = [0]

        def drain_ctrl():
            for s in ctrl_socks:
                try:
                    while True:
                        b = s.recv(65536)
                        if not b:
                            break
                        ctrl_bytes[0] += len(b)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    pass

        last = [0.0]

        def poll():
            now = time.monotonic()
            if now - last[0] > 0.1:
                last[0] = now
                drain_ctrl()

        m = drive(ps, proc.pid, args.duration, args.warmup, extra_poll=poll)
        result.update(m)
        result["control_bytes_received"] = ctrl_bytes[0]
        for s in ctrl_socks:
            try:
                s.setblocking(True)
                s.sendall(b"endsession\n")
            except OSError:
                pass
        return result
    finally:
        for s in ctrl_socks:
            try:
                s.close()
            except OSError:
                pass
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logf.close()



# --------------------------------------------------------------------------- content check

def _crc_table():
    t = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        t.append(r & 0xFFFFFFFF)
    return t


_CRC = _crc_table()


def _ogg_page(data, granule, serial, seq, flags):
    segs = []
    n = len(data)
    while n >= 255:
        segs.append(255)
        n -= 255
    segs.append(n)
    hdr = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, seq, 0, len(segs)) + bytes(segs)
    page = bytearray(hdr + data)
    crc = 0
    for b in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) ^ b) & 0xFF]
    page[22:26] = struct.pack("<I", crc)
    return bytes(page)


def write_ogg_opus(path, payloads):
    """Wrap received Opus payloads (20 ms each) in an Ogg Opus file ffmpeg can decode."""
    serial = 0x5EED
    pages = [_ogg_page(b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48000, 0, 0), 0, serial, 0, 2),
             _ogg_page(b"OpusTags" + struct.pack("<I", 5) + b"bench" + struct.pack("<I", 0), 0, serial, 1, 0)]
    g = 0
    for i, pl in enumerate(payloads):
        g += TS_STEP
        pages.append(_ogg_page(pl, g, serial, i + 2, 4 if i == len(payloads) - 1 else 0))
    with open(path, "wb") as f:
        f.write(b"".join(pages))


def tone_levels(path, freqs, skip_s=1.0):
    """Decode with ffmpeg and return the mean level (dBFS) of each frequency (Goertzel, 100 ms
    Hann blocks), after skipping `skip_s`."""
    import math
    pcm = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", path, "-ac", "1",
                          "-ar", "48000", "-f", "s16le", "-"], capture_output=True).stdout
    n = len(pcm) // 2
    x = struct.unpack(f"<{n}h", pcm[:2 * n])
    blk = 4800
    win = [0.5 - 0.5 * math.cos(2 * math.pi * i / blk) for i in range(blk)]
    out = {}
    start = int(skip_s * 48000)
    for f in freqs:
        c = 2 * math.cos(2 * math.pi * f / 48000)
        pw = []
        for b0 in range(start, n - blk + 1, blk):
            s1 = s2 = 0.0
            for i in range(blk):
                s0 = x[b0 + i] * win[i] / 32768.0 + c * s1 - s2
                s2, s1 = s1, s0
            mag2 = s1 * s1 + s2 * s2 - c * s1 * s2
            pw.append(mag2)
        if not pw:
            out[f] = None
            continue
        amp = 4 * math.sqrt(sum(pw) / len(pw)) / blk
        out[f] = round(20 * math.log10(max(amp, 1e-9)), 1)
    return out


def content_check(name, p, freqs, absent, workdir):
    if not p.recorded:
        return {"error": "nothing recorded"}
    pls = [pl for _, pl in p.recorded]  # arrival order (loopback does not reorder)
    path = os.path.join(workdir, f"{name}-{p.name}.opus")
    write_ogg_opus(path, pls)
    lv = tone_levels(path, list(freqs) + [absent])
    return {"participant": p.name, "talker": p.talker, "seconds": round(len(pls) * FRAME_S, 2),
            "dbfs": {str(k): v for k, v in lv.items()}}


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--participants", "-n", type=int, default=50)
    ap.add_argument("--talkers", "-k", type=int, default=3)
    ap.add_argument("--duration", "-d", type=float, default=20.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of media before measuring")
    ap.add_argument("--listener-media", choices=["silence", "once", "none"], default="silence",
                    help="what listeners send: Opus-encoded silence every 20 ms (default, like a "
                         "client with an open microphone), one silence packet at the start and "
                         "then nothing, or nothing (Janus then sends them nothing either)")
    ap.add_argument("--audio-level", choices=["on", "off"], default="off",
                    help="on: every packet carries the RFC 6464 audio level (extension id 1), as "
                         "WebRTC clients send it: voice at -18 dBov for talkers, no voice at -127 "
                         "for listeners. The same packets go to both servers")
    ap.add_argument("--bitrate", default="32k", help="Opus bitrate of the pre-encoded streams")
    ap.add_argument("--content-check", type=float, default=5.0, metavar="SECS",
                    help="record SECS of what the last listener and the first talker receive, decode it "
                         "with ffmpeg and report the level of each talker's tone (0 turns it off)")
    ap.add_argument("--janus-bitrate", type=int, default=32000,
                    help="Opus bitrate Janus encodes each participant's mix at (join `bitrate`); the "
                         "default matches the project's mixer encoder (32 kb/s); 0 = Janus's default")
    ap.add_argument("--janus-quality", type=int, default=0,
                    help="Janus join `quality` (Opus complexity 1-10); 0 = Janus's default (4)")
    ap.add_argument("--project-driver", choices=["python", "confclient"], default="python",
                    help="drive the project with the shared Python driver (default) or with one "
                         "target/release/confclient process per participant (cross-check; heavy)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat both runs R times, alternating the order; the ratio uses the medians")
    ap.add_argument("--only", choices=["janus", "project", "both"], default="both")
    ap.add_argument("--order", choices=["janus-first", "project-first"], default="janus-first")
    ap.add_argument("--target", default="target/release", help="where noc is built")
    ap.add_argument("--json", default="/tmp/audiobridge-last-run.json")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = ap.parse_args()
    if args.talkers > args.participants:
        ap.error("--talkers must not exceed --participants")

    workdir = tempfile.mkdtemp(prefix="audiobridge-bench-")
    log(f"workdir {workdir}; encoding Opus with ffmpeg")
    freqs = [440, 660, 880, 550, 770, 990, 330, 1100]
    tones = [capture_opus(f"sine=frequency={f}:sample_rate=48000", 2, args.bitrate)
             for f in freqs[:max(1, min(args.talkers, len(freqs)))]]
    silence = capture_opus("anullsrc=r=48000:cl=mono", 2, args.bitrate)
    log(f"Opus payload sizes: tone {sum(map(len, tones[0])) / len(tones[0]):.1f} B, "
        f"silence {sum(map(len, silence)) / len(silence):.1f} B")

    runs = ["janus", "project"] if args.order == "janus-first" else ["project", "janus"]
    if args.only != "both":
        runs = [args.only]
    out = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "command": " ".join(sys.argv),
        "scenario": {"participants": args.participants, "talkers": args.talkers,
                     "duration_s": args.duration, "warmup_s": args.warmup,
                     "listener_media": args.listener_media, "opus_bitrate": args.bitrate,
                     "audio_level": args.audio_level,
                     "janus_join_bitrate": args.janus_bitrate or "janus default",
                     "janus_join_quality": args.janus_quality or "janus default (4)",
                     "frame_ms": 20, "sample_rate": 48000},
        "opus_payload_bytes": {"tone": round(sum(map(len, tones[0])) / len(tones[0]), 1),
                               "silence": round(sum(map(len, silence)) / len(silence), 1)},
    }
    out["rounds"] = []
    for rnd in range(args.rounds):
        order = runs if rnd % 2 == 0 else list(reversed(runs))
        this = {}
        if args.rounds > 1:
            log(f"round {rnd + 1}/{args.rounds}: {' then '.join(order)}")
        for which in order:
            ps = make_participants(args.participants, args.talkers, tones, silence, args.listener_media,
                                   args.audio_level == "on")
            if args.content_check:
                ps[-1].record = int(args.content_check / FRAME_S)
                ps[0].record = int(args.content_check / FRAME_S)
            try:
                if which == "janus":
                    this["janus"] = run_janus(args, ps, workdir)
                else:
                    this["project"] = run_project(args, ps, workdir)
            except Exception as e:  # report, keep going with the other server
                this[which] = {"error": f"{type(e).__name__}: {e}"}
            if args.content_check and "error" not in this[which] and rnd == 0:
                tfreqs = sorted({freqs[i % len(tones)] for i in range(args.talkers)})
                try:
                    this[which]["content"] = {
                        "expected_hz": tfreqs, "absent_hz": 1300,
                        "listener": content_check(which, ps[-1], tfreqs, 1300, workdir) if not ps[-1].talker else None,
                        "talker0": content_check(which, ps[0], tfreqs, 1300, workdir) if ps[0].talker else None,
                    }
                except Exception as e:
                    this[which]["content"] = {"error": f"{type(e).__name__}: {e}"}
            for p in ps:
                p.sock.close()
                if getattr(p, "ctrl", None):
                    try:
                        p.ctrl.close()
                    except OSError:
                        pass
            time.sleep(1)
        out["rounds"].append(this)

    def median(v):
        v = sorted(v)
        return (v[len(v) // 2] + v[(len(v) - 1) // 2]) / 2 if v else None

    for name in runs:
        out[name] = out["rounds"][0][name]
        cpus = [r[name]["server_cpu_cores"] for r in out["rounds"] if "server_cpu_cores" in r[name]]
        if cpus:
            out[f"{name}_cpu_cores_median"] = round(median(cpus), 4)
            out[f"{name}_cpu_cores_rounds"] = cpus
    if args.rounds == 1:
        del out["rounds"]
    j = {"server_cpu_cores": out["janus_cpu_cores_median"]} if "janus_cpu_cores_median" in out else {}
    pr = {"server_cpu_cores": out["project_cpu_cores_median"]} if "project_cpu_cores_median" in out else {}
    if "server_cpu_cores" in j and "server_cpu_cores" in pr and pr["server_cpu_cores"] > 0:
        out["ratio_janus_cpu_over_project_cpu"] = round(j["server_cpu_cores"] / pr["server_cpu_cores"], 2)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)

    # Table.
    def row(name, r):
        if "error" in r:
            return f"{name:<10} ERROR: {r['error']}"
        L = r.get("listeners", {})
        T = r.get("talkers", {})
        return (f"{name:<10} {r['server_cpu_cores']:>9.3f} {r['driver_cpu_cores']:>9.3f} "
                f"{r['sent_pkts_per_s'] or 0:>9.0f} {L.get('rx_pkts_per_participant_per_s', 0):>10.1f} "
                f"{L.get('participants_receiving_nothing', 0):>6} {L.get('mean_rx_payload_bytes', 0):>8.1f} "
                f"{T.get('rx_pkts_per_participant_per_s', 0):>10.1f}")
    print()
    print(f"scenario: {args.participants} participants, {args.talkers} talkers (Opus tone, 20 ms), "
          f"listeners send {args.listener_media}, {args.duration:g} s measured after {args.warmup:g} s warm-up; "
          f"nproc={out['nproc']}")
    if args.rounds > 1:
        print("per-run figures below are from round 1; the ratio uses the medians of all rounds")
    print(f"{'server':<10} {'cpu_cores':>9} {'drv_cpu':>9} {'in_pps':>9} {'lst_rx/s':>10} {'lst_0':>6} "
          f"{'lst_pl_B':>8} {'tlk_rx/s':>10}")
    for name in runs:
        print(row("janus" if name == "janus" else "project", out[name]))
    for name in runs:
        c = out[name].get("content") or {}
        for who in ("listener", "talker0"):
            cc = c.get(who)
            if cc and "dbfs" in cc:
                lv = ", ".join(f"{k} Hz {v} dBFS" for k, v in cc["dbfs"].items())
                print(f"  {name:<8} {who:<8} ({cc['participant']}, {cc['seconds']} s): {lv}")
        if c.get("error"):
            print(f"  {name:<8} content check error: {c['error']}")
    if args.rounds > 1:
        for name in runs:
            if f"{name}_cpu_cores_rounds" in out:
                print(f"  {name:<8} server cpu_cores per round: {out[name + '_cpu_cores_rounds']}, "
                      f"median {out[name + '_cpu_cores_median']}")
    if "ratio_janus_cpu_over_project_cpu" in out:
        print(f"ratio Janus CPU / project CPU = {out['ratio_janus_cpu_over_project_cpu']}")
    else:
        print("ratio: not available (see errors above)")
    print(f"json: {args.json}")
    if args.keep:
        print(f"workdir: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if "ratio_janus_cpu_over_project_cpu" in out or args.only != "both" else 1


if __name__ == "__main__":
    sys.exit(main())
