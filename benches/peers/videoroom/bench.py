#!/usr/bin/env python3
"""Side-by-side video fan-out: Janus VideoRoom vs this project's reflector (`mode=reflect`).

One scenario, two servers, one run: R rooms, each with one plain-RTP publisher sending a real
H.264 stream (encoded once by ffmpeg, looped with fresh sequence numbers and timestamps) and N
receivers, for D seconds. The same Python driver sends the same packets to both servers and
counts what every receiver socket gets; only the signalling differs:

- Janus VideoRoom: `create` a room, `add_remote_publisher` (plain RTP in; Janus tells the
  streams apart by SSRC, 1000 for the first stream), `rtp_forward` once per receiver.
- The project: per participant the control protocol of docs/protocol.md with
  `media=audio,video`; the publisher declares its socket in `channel video ADDR SSRC`, each
  receiver its own, and the reflector forwards the publisher's video to the other members.

Each server's CPU is utime+stime of its process over the steady window (/proc/PID/stat).
Loopback only. Python standard library only. Helpers come from ../audiobridge/bench.py.
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "audiobridge"))
import bench as ab  # noqa: E402  (shared Janus config, HTTP, CPU and control-line helpers)

PT = 96
CLOCK = 90_000


def log(*a):
    print("[vr]", *a, file=sys.stderr, flush=True)


def capture_h264(seconds, bitrate, fps, size):
    """Encodes `seconds` of testsrc to H.264 RTP with ffmpeg and keeps the packets as
    (timestamp offset, marker, payload), in order."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
           f"testsrc=size={size}:rate={fps}", "-t", str(seconds), "-c:v", "libx264",
           "-profile:v", "baseline", "-preset", "ultrafast", "-tune", "zerolatency",
           "-pix_fmt", "yuv420p", "-g", str(fps), "-bf", "0", "-b:v", bitrate,
           "-flags", "+global_header", "-bsf:v", "dump_extra=freq=keyframe",
           "-payload_type", str(PT), "-ssrc", "1", "-f", "rtp",
           f"rtp://127.0.0.1:{port}?pkt_size=1200"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    pkts = []
    rx.settimeout(0.5)
    while True:
        try:
            pkt = rx.recv(2048)
        except socket.timeout:
            if proc.poll() is not None:
                break
            continue
        if len(pkt) < 12 or (pkt[1] & 0x7F) != PT:
            continue  # RTCP
        ts = struct.unpack("!I", pkt[4:8])[0]
        pkts.append((ts, pkt[1] & 0x80, pkt[12:]))
    rx.close()
    if not pkts:
        raise RuntimeError("ffmpeg produced no H.264 RTP")
    t0 = pkts[0][0]
    return [((ts - t0) & 0xFFFFFFFF, m, pl) for ts, m, pl in pkts]


class Sock:
    def __init__(self, name):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.rx_pkts = 0


class Publisher(Sock):
    """Loops the captured stream with its own SSRC, sequence numbers and timestamps."""

    def __init__(self, name, stream, period_ticks, phase_s):
        super().__init__(name)
        self.stream = stream
        self.period = period_ticks
        self.phase = phase_s
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts0 = random.getrandbits(32)
        self.dest = None
        self.i = 0
        self.loops = 0
        self.sent = 0

    def due(self, elapsed):
        """Packets whose media time has come, as bytes."""
        out = []
        t = (elapsed - self.phase) * CLOCK
        while t >= 0:
            off, marker, pl = self.stream[self.i]
            at = self.loops * self.period + off
            if at > t:
                break
            hdr = struct.pack("!BBHII", 0x80, marker | PT, self.seq & 0xFFFF,
                              (self.ts0 + at) & 0xFFFFFFFF, self.ssrc)
            out.append(hdr + pl)
            self.seq += 1
            self.i += 1
            if self.i == len(self.stream):
                self.i = 0
                self.loops += 1
        return out


def drive(pubs, rxs, server_pid, duration, warmup, extra_poll=None):
    sel = selectors.DefaultSelector()
    for r in rxs:
        sel.register(r.sock, selectors.EVENT_READ, r)
    t0 = time.monotonic()
    end = t0 + warmup + duration
    m = None
    while True:
        now = time.monotonic()
        if m is None and now >= t0 + warmup:
            for r in rxs:
                r.rx_pkts = 0
            m = {"srv0": ab.cpu_ticks(server_pid), "drv0": os.times(), "t0": now,
                 "sent0": sum(p.sent for p in pubs)}
        if now >= end:
            break
        for p in pubs:
            for pkt in p.due(now - t0):
                try:
                    p.sock.sendto(pkt, p.dest)
                    p.sent += 1
                except OSError:
                    pass
        if extra_poll:
            extra_poll()
        for key, _ in sel.select(0.002):
            r = key.data
            for _ in range(256):
                try:
                    r.sock.recv(2048)
                except (BlockingIOError, InterruptedError, OSError):
                    break
                r.rx_pkts += 1
    # Let the last packets arrive.
    t1 = time.monotonic()
    srv1 = ab.cpu_ticks(server_pid)
    drv1 = os.times()
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        for key, _ in sel.select(0.01):
            while True:
                try:
                    key.data.sock.recv(2048)
                except (BlockingIOError, InterruptedError, OSError):
                    break
                key.data.rx_pkts += 1
    sel.close()
    wall = t1 - m["t0"]
    sent = sum(p.sent for p in pubs) - m["sent0"]
    fanout = len(rxs) // max(1, len(pubs))
    expected = sent * fanout
    got = sum(r.rx_pkts for r in rxs)
    return {
        "window_s": round(wall, 3),
        "server_cpu_cores": round((srv1 - m["srv0"]) / ab.CLK_TCK / wall, 4),
        "driver_cpu_cores": round(((drv1.user - m["drv0"].user) + (drv1.system - m["drv0"].system)) / wall, 4),
        "pkts_in_per_s": round(sent / wall, 1),
        "pkts_out_per_s": round(got / wall, 1),
        "delivered_fraction": round(got / expected, 4) if expected else 0,
        "receivers_with_nothing": sum(1 for r in rxs if r.rx_pkts == 0),
    }


def make(args, stream, period):
    pubs, rxs = [], []
    for room in range(args.rooms):
        pubs.append(Publisher(f"pub{room}", stream, period, phase_s=room * 0.013))
        rxs.extend(Sock(f"rx{room}.{i}") for i in range(args.receivers))
    return pubs, rxs


def write_videoroom_config(cfg, http_port, n):
    """Janus config as ../audiobridge writes it, with the VideoRoom plugin instead."""
    lo, hi = ab.write_janus_config(cfg, http_port, n)
    path = os.path.join(cfg, "janus.jcfg")
    text = open(path).read()
    plugins_dir = "/usr/lib/x86_64-linux-gnu/janus/plugins"
    others = sorted(f for f in os.listdir(plugins_dir) if f.endswith(".so") and f != "libjanus_videoroom.so")
    start = text.index('plugins: {')
    stop = text.index('}', start)
    text = text[:start] + 'plugins: {\n\tdisable = "' + ",".join(others) + '"\n' + text[stop:]
    open(path, "w").write(text)
    os.remove(os.path.join(cfg, "janus.plugin.audiobridge.jcfg"))
    with open(os.path.join(cfg, "janus.plugin.videoroom.jcfg"), "w") as f:
        f.write("general: {\n\tevents = false\n}\n")
    return lo, hi


def run_janus(args, pubs, rxs, workdir):
    if not shutil.which("janus"):
        return {"error": "janus binary not found (apt-get install -y janus failed?)"}
    http_port = ab.free_port()
    cfg = os.path.join(workdir, "janus")
    os.makedirs(cfg, exist_ok=True)
    write_videoroom_config(cfg, http_port, len(pubs) + len(rxs))
    logf = os.path.join(workdir, "janus.log")
    proc = subprocess.Popen(["janus", "-C", os.path.join(cfg, "janus.jcfg"), "-F", cfg, "-o",
                             "-L", logf, "-N"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    api = ab.JanusHTTP(f"http://127.0.0.1:{http_port}/janus")
    result = {"pid": proc.pid, "log": logf}
    stop_poll = threading.Event()
    try:
        deadline = time.time() + 20
        while True:
            try:
                result["version"] = api.post("", {"janus": "info"}, timeout=2).get("version_string")
                break
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    return {"error": f"janus did not start (rc={proc.poll()}); see {logf}"}
                time.sleep(0.2)
        sess = api.post("", {"janus": "create"})["data"]["id"]
        h = api.post(f"/{sess}", {"janus": "attach", "plugin": "janus.plugin.videoroom"})["data"]["id"]

        def msg(body):
            r = api.post(f"/{sess}/{h}", {"janus": "message", "body": body})
            data = (r.get("plugindata") or {}).get("data") or {}
            if r.get("janus") == "error" or "error" in data:
                raise RuntimeError(f"{body.get('request')}: {r}")
            return data

        for i, p in enumerate(pubs):
            room = 1000 + i
            msg({"request": "create", "room": room, "publishers": 1, "videocodec": "h264",
                 "bitrate": 0, "fir_freq": 0})
            data = msg({"request": "add_remote_publisher", "room": room, "id": 777,
                        "display": p.name, "iface": "127.0.0.1",
                        "streams": [{"type": "video", "mindex": 0, "mid": "0", "codec": "h264"}]})
            p.dest = ("127.0.0.1", int(data["port"]))
            # Janus 1.1.2 tells a remote publisher's streams apart by SSRC: 1000 + 10 x index.
            p.ssrc = 1000
            for r in rxs[i * args.receivers:(i + 1) * args.receivers]:
                fwd = {"request": "rtp_forward", "room": room, "publisher_id": 777,
                       "host": "127.0.0.1", "streams": [{"mid": "0", "port": r.port}]}
                # The remote publisher can take a moment to appear ("No such feed").
                for attempt in range(40):
                    try:
                        msg(fwd)
                        break
                    except RuntimeError:
                        if attempt == 39:
                            raise
                        time.sleep(0.05)

        def poller():
            while not stop_poll.is_set():
                try:
                    api.get(f"/{sess}?maxev=100&rid={int(time.time()*1000)}", timeout=35)
                except Exception:
                    time.sleep(0.5)
        threading.Thread(target=poller, daemon=True).start()
        log(f"janus {result['version']}: {len(pubs)} rooms, {args.receivers} forwarders each; "
            f"media for {args.warmup}+{args.duration} s")
        result.update(drive(pubs, rxs, proc.pid, args.duration, args.warmup))
        return result
    finally:
        stop_poll.set()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def project_join(disp, conf, s, publisher):
    """Joins `s` to `conf` with media=audio,video and declares its socket for video."""
    c = socket.create_connection(disp, timeout=10)
    lc = ab.Lines(c)
    lc.read()
    lc.send("join", conf, "demo", s.name, "mode=reflect", "media=audio,video")
    while True:
        ln = lc.read()
        if ln[0] == "dispatch":
            ms, ticket = ln[1], ln[2]
            break
        if ln[0] in ("reject", "error"):
            raise RuntimeError(f"dispatcher: {ln}")
    c.close()
    m = socket.create_connection(ab.hostport(ms), timeout=10)
    lm = ab.Lines(m)
    lm.read()
    lm.send("join", conf, "demo", s.name, "mode=reflect", "media=audio,video", f"ticket={ticket}")
    while True:
        ln = lm.read()
        if ln[0] in ("reject", "error"):
            raise RuntimeError(f"media server: {ln}")
        if ln[0] == "channel" and ln[1] == "video":
            if ln[4] != "h264":
                raise RuntimeError(f"unexpected video codec {ln}")
            if publisher:
                s.dest = ab.hostport(ln[2])
                s.ssrc = int(ln[5])
            lm.send("channel", "video", f"127.0.0.1:{s.port}", ln[5])
            break
    m.setblocking(False)
    return m


def run_project(args, pubs, rxs, workdir):
    noc = os.path.join(args.target, "noc")
    if not os.access(noc, os.X_OK):
        return {"error": f"{noc} not built"}
    logf = open(os.path.join(workdir, "noc.log"), "w")
    proc = subprocess.Popen([noc, "--listen", "127.0.0.1:0", "--media-servers", "1",
                             "--capacity", str(max(1000, 4 * (len(pubs) + len(rxs))))],
                            stdout=subprocess.PIPE, stderr=logf, text=True)
    result = {"pid": proc.pid, "log": logf.name}
    ctrl = []
    try:
        disp = None
        deadline = time.time() + 30
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                return {**result, "error": f"noc exited before ready; see {logf.name}"}
            w = line.split()
            if w and w[0] == "dispatcher":
                disp = ab.hostport(w[1])
            elif w and w[0] == "ready":
                break
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        for i, p in enumerate(pubs):
            conf = f"vr{i}-{random.getrandbits(20):x}"
            ctrl.append(project_join(disp, conf, p, True))
            for r in rxs[i * args.receivers:(i + 1) * args.receivers]:
                ctrl.append(project_join(disp, conf, r, False))
        log(f"project noc: {len(pubs)} conferences, {args.receivers} receivers each; media for "
            f"{args.warmup}+{args.duration} s")
        last = [0.0]

        def drain():
            now = time.monotonic()
            if now - last[0] < 0.1:
                return
            last[0] = now
            for s in ctrl:
                try:
                    while s.recv(65536):
                        pass
                except OSError:
                    pass

        result.update(drive(pubs, rxs, proc.pid, args.duration, args.warmup, extra_poll=drain))
        return result
    finally:
        for s in ctrl:
            s.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logf.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rooms", "-r", type=int, default=10, help="rooms, one publisher each")
    ap.add_argument("--receivers", "-n", type=int, default=10, help="receivers per room")
    ap.add_argument("--bitrate", default="1M", help="H.264 bitrate of the looped stream")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--duration", "-d", type=float, default=20.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=1, help="repeat both, alternating the order")
    ap.add_argument("--only", choices=["janus", "project", "both"], default="both")
    ap.add_argument("--target", default="target/release", help="where noc is built")
    ap.add_argument("--json", default="/tmp/videoroom-last-run.json")
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="videoroom-bench-")
    seconds = 4
    stream = capture_h264(seconds, args.bitrate, args.fps, args.size)
    period = seconds * CLOCK
    log(f"workdir {workdir}; H.264 loop: {len(stream)} packets in {seconds} s, "
        f"mean payload {sum(len(p[2]) for p in stream) / len(stream):.0f} B")
    runs = ["janus", "project"] if args.only == "both" else [args.only]
    out = {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "nproc": os.cpu_count(),
           "command": " ".join(sys.argv), "rounds": [],
           "scenario": {"rooms": args.rooms, "receivers_per_room": args.receivers,
                        "bitrate": args.bitrate, "fps": args.fps, "size": args.size,
                        "duration_s": args.duration, "warmup_s": args.warmup}}
    for rnd in range(args.rounds):
        this = {}
        for which in (runs if rnd % 2 == 0 else list(reversed(runs))):
            pubs, rxs = make(args, stream, period)
            try:
                fn = run_janus if which == "janus" else run_project
                this[which] = fn(args, pubs, rxs, workdir)
            except Exception as e:
                this[which] = {"error": f"{type(e).__name__}: {e}"}
            finally:
                for s in pubs + rxs:
                    s.sock.close()
            log(which, json.dumps(this[which]))
        out["rounds"].append(this)
    print(f"{'server':10} {'CPU cores':>10} {'pkts in/s':>10} {'pkts out/s':>11} {'delivered':>10}")
    for i, r in enumerate(out["rounds"]):
        for which, m in r.items():
            if "error" in m:
                print(f"{which:10} error: {m['error']}")
                continue
            print(f"{which:10} {m['server_cpu_cores']:>10} {m['pkts_in_per_s']:>10} "
                  f"{m['pkts_out_per_s']:>11} {m['delivered_fraction']:>10}")
    cpu = {w: sorted(r[w]["server_cpu_cores"] for r in out["rounds"] if "server_cpu_cores" in r.get(w, {}))
           for w in runs}
    if all(cpu.get(w) for w in ("janus", "project")):
        med = {w: v[len(v) // 2] for w, v in cpu.items()}
        out["ratio_janus_over_project"] = round(med["janus"] / med["project"], 2) if med["project"] else None
        print(f"ratio Janus CPU / project CPU (medians): {out['ratio_janus_over_project']}")
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)
    print(f"full results: {args.json}")


if __name__ == "__main__":
    main()
