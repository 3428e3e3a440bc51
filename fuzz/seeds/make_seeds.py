#!/usr/bin/env python3
"""Writes the small seed corpora of the fuzz targets (fuzz/seeds/TARGET/NAME).

Seeds are a few well-formed inputs per target, in each target's own input layout, so the
fuzzer starts from inside the parsers rather than at their first length check. Run it
again after changing a layout; `fuzz/run.sh` reads these and grows its working corpus
under fuzz/corpus/ (not committed).
"""
import hashlib, hmac, json, os, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def rtp(pt=111, seq=1, ts=960, ssrc=0x1111, payload=b"\xfc\xff\xfe", marker=False, ext=None):
    b0 = 0x80 | (0x10 if ext else 0)
    h = struct.pack("!BBHII", b0, pt | (0x80 if marker else 0), seq, ts, ssrc)
    if ext:
        words = (len(ext) + 3) // 4
        h += struct.pack("!HH", 0xBEDE, words) + ext.ljust(words * 4, b"\0")
    return h + payload


def framed(packets, sel=lambda i: i % 3):
    """[selector, length, bytes...] per packet, as rtp_view, mix_datagram and rtcp read."""
    out = b""
    for i, p in enumerate(packets):
        p = p[:255]
        out += bytes([sel(i), len(p)]) + p
    return out


LINES = [
    "join\tteam\talice\taccount=acme\tmode=mix",
    "accept\t7\t127.0.0.1:40000",
    "dispatch\t127.0.0.1:3451\tTICKET.abc\tteam",
    "text\thello there",
    "text\tto=3\tprivate",
    "mute\t3\ton",
    "level\t3:40,5:12",
    "channel\taudio\t127.0.0.1:5004\topus",
    "report\tms1\t100\t80\t2\t10",
    "sdp\toffer\tv=0",
    "sdpend\toffer\t1",
]
for i, l in enumerate(LINES):
    put("control_line", f"line{i}", l + "\n")
put("ws_message", "one", b"\x05" + b"join\tteam\tbob\n")
put("ws_message", "two", b"\x00" + b"text\thi\r\nping\n")

audio_level = bytes([0x10, 0x80 | 30])  # id 1, len 0, voice, -30 dBov
stream = [rtp(seq=s, ts=960 * s, ssrc=0x1111 + (s % 3), ext=audio_level) for s in range(1, 7)]
put("rtp_view", "audio", framed(stream))
put("rtp_view", "video", framed([rtp(pt=96, seq=9, ssrc=0x2222, payload=b"\x65\x88\x84", marker=True)]))
put("mix_datagram", "opus", framed(stream))
put("mix_datagram", "pcmu", framed([rtp(pt=0, seq=s, ts=160 * s, payload=b"\xff" * 160) for s in range(4)]))

sr = struct.pack("!BBHI", 0x80, 200, 6, 0x1111) + b"\0" * 20
rr = struct.pack("!BBHI", 0x81, 201, 7, 0x2222) + struct.pack("!I", 0x1111) + b"\0" * 20
nack = struct.pack("!BBHII", 0x81, 205, 3, 0x2222, 0x1111) + struct.pack("!HH", 5, 0b101)
pli = struct.pack("!BBHII", 0x81, 206, 2, 0x2222, 0x1111)
remb = struct.pack("!BBHII", 0x8F, 206, 5, 0x2222, 0) + b"REMB" + bytes([1, 0x0A, 0xBC, 0xDE]) + struct.pack("!I", 0x1111)
put("rtcp", "sr_rr", framed([sr + rr]))
put("rtcp", "feedback", framed([nack, pli, remb]))
put("client_datagram", "rtp", rtp())
put("client_datagram", "rtcp", sr)

row = {"id": "ms1", "client_addr": "127.0.0.1:3451", "ws_url": None, "caps": "audio,reflect,mix",
       "total": 1000, "unused": 900, "conferences": 2, "users": 10, "cpu_pct": 12.5, "pps": 5000,
       "loss_pct": 0.0, "reported_unix_ms": 1764900000000, "draining": False, "maintenance": None,
       "dispatcher": "d1", "roster": {"team": 3}}
put("store_row", "rows", json.dumps([row, dict(row, id="ms2")]))
put("store_row", "merge", json.dumps({"conference": "team", "from": "ms1", "to": "ms2", "dispatcher": "d1"}))
put("loadgen_datagram", "probe", rtp(payload=struct.pack("!QQ", 1, 2) + b"\0" * 84))

def packets(payloads):
    """[flags, length, payload...]: bit 0 marker, bits 3-7 = 16 (in order)."""
    out = b""
    for i, p in enumerate(payloads):
        last = i == len(payloads) - 1
        out += bytes([(16 << 3) | (1 if last else 0), len(p)]) + p
    return out

sps = b"\x67\x42\xc0\x1e\xd9\x00\xa0\x47\xfe\xc8"
pps = b"\x68\xce\x3c\x80"
idr = b"\x65" + bytes(range(40))
stap = b"\x18" + struct.pack("!H", len(sps)) + sps + struct.pack("!H", len(pps)) + pps
fu = [b"\x7c\x85" + idr[1:20], b"\x7c\x45" + idr[20:]]
put("h264_depacketizer", "stap_fu", packets([stap] + fu))
put("h264_depacketizer", "single", packets([sps, pps, idr]))
vp8_key = b"\x10\x00\x00\x9d\x01\x2a\x40\x01\xf0\x00" + bytes(30)
put("vp8_depacketizer", "key", packets([vp8_key]))
put("vp8_depacketizer", "pictureid", packets([b"\x90\x80\x81\x02" + vp8_key[1:10], b"\x80\x80\x81\x02" + bytes(20)]))

OFFER = open(os.path.join(HERE, "chromium_offer.sdp"), "rb").read()
put("sdp", "chromium", OFFER)
put("sdp", "audio_only", OFFER.split(b"m=application")[0])


def stun_request(user, pwd, nominate):
    txid = bytes(range(12))
    attrs = b""
    u = user.encode()
    attrs += struct.pack("!HH", 0x0006, len(u)) + u.ljust((len(u) + 3) // 4 * 4, b"\0")
    if nominate:
        attrs += struct.pack("!HH", 0x0025, 0)
    hdr = lambda n: struct.pack("!HHI", 0x0001, n, 0x2112A442) + txid
    mi = hmac.new(pwd.encode(), hdr(len(attrs) + 24) + attrs, hashlib.sha1).digest()
    attrs += struct.pack("!HH", 0x0008, 20) + mi
    crc = (zlib.crc32(hdr(len(attrs) + 8) + attrs) ^ 0x5354554E) & 0xFFFFFFFF
    attrs += struct.pack("!HHI", 0x8028, 4, crc)
    return hdr(len(attrs)) + attrs

put("stun", "binding", stun_request("srvU:brwU", "fuzzfuzzfuzzfuzzfuzzfu", True))
put("stun", "credentials", b"srvU\0brwU")
put("srtp", "gcm_rtp", b"\x00" + rtp(ext=audio_level))
put("srtp", "cm_rtp", b"\x01" + rtp())
put("srtp", "gcm_rtcp", b"\x02" + sr)
put("srtp", "cm_rtcp", b"\x03" + rr)


def slot_packets(items):
    """slots: (outgoing?, 100 ms steps, packet) as length, direction-and-clock, bytes."""
    return b"".join(bytes([len(p), (0x80 if out else 0) | step]) + p for out, step, p in items)


put("slots", "streams", slot_packets([
    (True, 0, rtp(ssrc=0xAAAA)), (True, 0, rtp(ssrc=0xBBBB)), (True, 0, rtp(pt=97, ssrc=0xCCCC)),
    (True, 40, rtp(ssrc=0xDDDD, seq=9)), (False, 40, rtp(pt=109)), (True, 41, sr),
]))
put("slots", "feedback", slot_packets([
    (True, 0, rtp(ssrc=0xAAAA)), (False, 1, rr), (False, 1, nack + pli + remb),
]))
