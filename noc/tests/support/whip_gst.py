#!/usr/bin/python3
"""A WHIP publisher and a WHEP player on GStreamer's webrtcbin, for the interop test.

Debian's GStreamer has webrtcbin but not whipclientsink or whepsrc, so this script does the
RFC 9725 exchange itself: it POSTs the offer (ICE gathered, no trickle), follows a 307 to
the media server, applies the answer, runs for a while and DELETEs the resource.

    whip_gst.py publish URL TOKEN --freq 440 --seconds 8
    whip_gst.py play URL TOKEN --wav out.wav --seconds 8

It prints `resource URL` once answered and `done` at the end; it exits non-zero with the
reason on any failure.
"""

import argparse
import sys
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

OPUS = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"


def fail(why):
    print(f"error {why}", flush=True)
    sys.exit(1)


def post_offer(url, token, sdp):
    """POST the offer, following redirects by hand (urllib will not re-POST on a 307)."""
    for _ in range(4):
        req = urllib.request.Request(
            url,
            data=sdp.encode(),
            method="POST",
            headers={"Content-Type": "application/sdp", "Authorization": "Bearer " + token},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                location = urllib.parse.urljoin(url, r.headers["Location"])
                return r.status, location, r.read().decode()
        except urllib.error.HTTPError as e:
            if e.code in (307, 308):
                url = urllib.parse.urljoin(url, e.headers["Location"])
                print(f"redirected {url.split('?')[0]}", flush=True)
                continue
            fail(f"{e.code} {e.read().decode().strip()}")
    fail("too many redirects")


def delete(url):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


class Peer:
    def __init__(self, args):
        self.args = args
        self.loop = GLib.MainLoop()
        self.resource = None
        if args.role == "publish":
            self.pipe = Gst.parse_launch(
                "webrtcbin name=w bundle-policy=max-bundle "
                f"audiotestsrc is-live=true wave=sine freq={args.freq} volume=0.25 "
                "! audioconvert ! audioresample ! opusenc ! rtpopuspay pt=111 "
                f"! queue ! {OPUS} ! w."
            )
            self.w = self.pipe.get_by_name("w")
            # Set before the first negotiation: a change during it negotiates again.
            t = self.w.emit("get-transceiver", 0)
            if t is None:
                fail("webrtcbin made no transceiver for the tone")
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        else:
            self.pipe = Gst.Pipeline.new("play")
            self.w = Gst.ElementFactory.make("webrtcbin", "w")
            self.w.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
            self.pipe.add(self.w)
            self.w.emit(
                "add-transceiver",
                GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
                Gst.Caps.from_string(OPUS),
            )
            self.w.connect("pad-added", self.on_pad)
        self.w.connect("on-negotiation-needed", self.on_negotiation)
        self.w.connect("notify::ice-gathering-state", self.on_gathering)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)
        self.offered = False

    def on_error(self, _bus, msg):
        err, dbg = msg.parse_error()
        fail(f"gstreamer: {err.message} {dbg}")

    def on_negotiation(self, w):
        promise = Gst.Promise.new_with_change_func(self.on_offer, w, None)
        w.emit("create-offer", None, promise)

    def on_offer(self, promise, w, _data):
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        if offer is None:
            fail(f"webrtcbin made no offer: {reply.to_string() if reply else 'no reply'}")
        w.emit("set-local-description", offer, Gst.Promise.new())

    def on_gathering(self, w, _pspec):
        state = w.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not self.offered:
            self.offered = True
            GLib.idle_add(self.exchange)

    def exchange(self):
        sdp = self.w.get_property("local-description").sdp.as_text()
        print(sdp, file=sys.stderr, flush=True)
        status, self.resource, answer = post_offer(self.args.url, self.args.token, sdp)
        if status != 201:
            fail(f"answered {status}")
        print(f"resource {self.resource}", flush=True)
        print(answer, file=sys.stderr, flush=True)
        res, msg = GstSdp.SDPMessage.new_from_text(answer)
        if res != GstSdp.SDPResult.OK:
            fail("the answer does not parse")
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        self.w.emit("set-remote-description", desc, Gst.Promise.new())
        GLib.timeout_add(int(self.args.seconds * 1000), self.finish)
        return False

    def on_pad(self, _w, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        sink = Gst.parse_bin_from_description(
            "queue ! rtpopusdepay ! opusdec ! audioconvert ! audioresample "
            "! audio/x-raw,format=S16LE,rate=48000,channels=1 "
            f"! wavenc ! filesink location={self.args.wav}",
            True,
        )
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        print("receiving", flush=True)

    def finish(self):
        code = delete(self.resource)
        print(f"deleted {code}", flush=True)
        # EOS lets wavenc write its header's sizes before the file is closed.
        self.pipe.send_event(Gst.Event.new_eos())
        GLib.timeout_add(1500, self.loop.quit)
        return False

    def run(self):
        self.pipe.set_state(Gst.State.PLAYING)
        GLib.timeout_add(int((self.args.seconds + 20) * 1000), lambda: fail("timed out"))
        self.loop.run()
        self.pipe.set_state(Gst.State.NULL)
        print("done", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["publish", "play"])
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("--freq", type=float, default=440.0)
    p.add_argument("--wav", default="whep.wav")
    p.add_argument("--seconds", type=float, default=8.0)
    Gst.init(None)
    Peer(p.parse_args()).run()


if __name__ == "__main__":
    main()
