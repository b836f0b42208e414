#!/usr/bin/env python3
"""A stand-in IP camera for Tern's end-to-end tests (GStreamer's RTSP server).

Serves an MPEG-TS (read from an http:// URL, or received on a UDP port) as
rtsp://127.0.0.1:PORT/cam, with its
H.264 video (RTP payload type 96) and AAC audio (97) re-packetized but not re-encoded,
so the barcodes of Tern's fake stream survive the trip. With --h265 the video is
decoded and encoded again as H.265 (x265; the barcodes survive that too). With USER and PASS it requires
HTTP Basic credentials, as cameras do. With --shared every client gets the same
session of one pipeline (`tern bench`'s many cameras), not a pipeline of its own.

Usage: rtsp_camera.py [--h265] [--shared] PORT HTTP_URL|UDP_PORT [USER PASS]
       rtsp_camera.py --check      (exits 0 when GStreamer's RTSP server is usable)

Packages (Debian): python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp
gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)

ELEMENTS = [
    "souphttpsrc", "udpsrc", "tsdemux", "h264parse", "rtph264pay", "aacparse", "rtpmp4gpay",
    "avdec_h264", "x265enc", "h265parse", "rtph265pay",
]


def main():
    if sys.argv[1:] == ["--check"]:
        missing = [e for e in ELEMENTS if Gst.ElementFactory.find(e) is None]
        if missing:
            print("missing GStreamer elements: " + " ".join(missing), file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    args = sys.argv[1:]
    flags = set()
    while args and args[0] in ("--h265", "--shared"):
        flags.add(args.pop(0))
    h265 = "--h265" in flags
    port, feed = args[0], args[1]
    if feed.startswith("http://"):
        source = f'souphttpsrc location="{feed}" is-live=true do-timestamp=true'
        demux = "tsdemux name=d"
    else:
        source = f'udpsrc port={int(feed)} caps="video/mpegts,systemstream=(boolean)true"'
        # Timestamps straight from the PES, as a camera's encoder gives them: with the
        # PCR as its clock, tsdemux's skew correction made them jump by ±100 ms on a
        # bursty loopback feed, which B-frames' presentation times cannot survive.
        demux = "tsdemux name=d ignore-pcr=true"

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    if h265:
        video = (
            "h264parse ! avdec_h264 ! videoconvert ! "
            "x265enc speed-preset=ultrafast tune=zerolatency key-int-max=25 "
            "option-string=\"scenecut=0:open-gop=0:min-keyint=25:pools=1:frame-threads=1\" ! "
            "h265parse config-interval=-1 ! rtph265pay name=pay0 pt=96"
        )
    else:
        video = "h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96"
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( {source} ! {demux} "
        f"d. ! queue ! {video} "
        "d. ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
    )
    # Like a camera: every client gets its own session (starting at a keyframe);
    # --shared: one pipeline for all, as a load generator.
    factory.set_shared("--shared" in flags)
    if len(args) > 3:
        user, password = args[2], args[3]
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        factory.add_role_from_structure(
            Gst.Structure.new_from_string(
                "user, media.factory.access=(boolean)true, "
                "media.factory.construct=(boolean)true"
            )
        )
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print("cannot listen on port " + port, file=sys.stderr)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
