#!/usr/bin/env python3
"""A stand-in IP camera for Tern's end-to-end tests (GStreamer's RTSP server).

Serves an MPEG-TS (read from an http:// URL, or received on a UDP port) as
rtsp://127.0.0.1:PORT/cam, with its
H.264 video (RTP payload type 96) and AAC audio (97) re-packetized but not re-encoded,
so the barcodes of Tern's fake stream survive the trip. With USER and PASS it requires
HTTP Basic credentials, as cameras do.

Usage: rtsp_camera.py PORT HTTP_URL|UDP_PORT [USER PASS]
       rtsp_camera.py --check      (exits 0 when GStreamer's RTSP server is usable)

Packages (Debian): python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp
gstreamer1.0-plugins-good gstreamer1.0-plugins-bad.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)

ELEMENTS = ["souphttpsrc", "udpsrc", "tsdemux", "h264parse", "rtph264pay", "aacparse", "rtpmp4gpay"]


def main():
    if sys.argv[1:] == ["--check"]:
        missing = [e for e in ELEMENTS if Gst.ElementFactory.find(e) is None]
        if missing:
            print("missing GStreamer elements: " + " ".join(missing), file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    port, feed = sys.argv[1], sys.argv[2]
    if feed.startswith("http://"):
        source = f'souphttpsrc location="{feed}" is-live=true do-timestamp=true'
    else:
        source = f'udpsrc port={int(feed)} caps="video/mpegts,systemstream=(boolean)true"'

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( {source} ! tsdemux name=d "
        "d. ! queue ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 "
        "d. ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
    )
    # Like a camera: every client gets its own session (starting at a keyframe).
    factory.set_shared(False)
    if len(sys.argv) > 4:
        user, password = sys.argv[3], sys.argv[4]
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
