#!/usr/bin/python3
"""HTTP/2 frames sent by hand, for the data plane's HTTP/2 tests.

Each scenario opens a TLS connection with ALPN h2, sends the client
preface and frames built here (hyperframe and hpack, the frame and header
codecs of the Python h2 stack, from Debian), reads what the server sends
back until it closes, goes quiet or a scenario's condition is met, and
prints one JSON object: the frames received, summarised.

    frames.py HOST PORT SNI CA_FILE SCENARIO [ARG]

The Rust test (dataplane/tests/http2.rs) decides what the answer must be;
this script only speaks the protocol and reports.
"""

import json
import socket
import ssl
import struct
import sys
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def settings(pairs=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


class Conn:
    def __init__(self, host, port, sni, ca, window=None, preface=PREFACE):
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host, port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname=sni)
        self.alpn = self.sock.selected_alpn_protocol()
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buf = b""
        self.events = []
        self.closed = False
        self.sent_bytes = 0
        self.send_failed = False
        pairs = [(0x2, 0)]  # ENABLE_PUSH = 0
        if window is not None:
            pairs.append((0x4, window))  # INITIAL_WINDOW_SIZE
        self.send(preface + settings(pairs))

    def send(self, data):
        if self.send_failed:
            return False
        try:
            self.sock.sendall(data)
            self.sent_bytes += len(data)
            return True
        except (OSError, ssl.SSLError):
            self.send_failed = True
            return False

    def headers_block(self, fields):
        return self.encoder.encode(fields)

    def request(self, stream, path, authority, method="GET", extra=(), end_stream=True):
        fields = [(":method", method), (":scheme", "https"), (":authority", authority), (":path", path)]
        fields += list(extra)
        block = self.headers_block(fields)
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        return self.send(frame(HEADERS, flags, stream, block))

    def read_events(self, quiet=1.0, until=None, limit=30.0):
        """Reads frames until the server closes, nothing arrives for
        `quiet` seconds, `until(event)` holds, or `limit` passes."""
        deadline = time.monotonic() + limit
        self.sock.settimeout(quiet)
        while not self.closed and time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return
            except (OSError, ssl.SSLError):
                self.closed = True
                return
            if not chunk:
                self.closed = True
                return
            self.buf += chunk
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                kind, flags = self.buf[3], self.buf[4]
                stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                payload = self.buf[9 : 9 + length]
                self.buf = self.buf[9 + length :]
                event = self.summarise(kind, flags, stream, payload)
                if event is not None:
                    self.events.append(event)
                    if until is not None and until(event):
                        return

    def summarise(self, kind, flags, stream, payload):
        if kind == SETTINGS:
            if flags & ACK:
                return {"type": "settings_ack"}
            self.send(settings(ack=True))
            values = {str(k): v for k, v in (struct.unpack(">HI", payload[i : i + 6]) for i in range(0, len(payload), 6))}
            return {"type": "settings", "values": values}
        if kind == HEADERS:
            block = payload
            if flags & 0x8:  # PADDED
                block = block[1 : len(block) - block[0]]
            if flags & 0x20:  # PRIORITY
                block = block[5:]
            fields = dict(self.decoder.decode(block))
            return {"type": "headers", "stream": stream, "status": fields.get(":status"), "end": bool(flags & END_STREAM)}
        if kind == DATA:
            if payload:
                # Keep the windows open for scenarios that read.
                inc = struct.pack(">I", len(payload))
                self.send(frame(WINDOW_UPDATE, 0, 0, inc) + frame(WINDOW_UPDATE, 0, stream, inc))
            return {"type": "data", "stream": stream, "len": len(payload), "end": bool(flags & END_STREAM)}
        if kind == RST_STREAM:
            return {"type": "rst", "stream": stream, "code": int.from_bytes(payload[:4], "big")}
        if kind == GOAWAY:
            return {
                "type": "goaway",
                "last": int.from_bytes(payload[:4], "big") & 0x7FFFFFFF,
                "code": int.from_bytes(payload[4:8], "big"),
            }
        if kind == PING:
            return {"type": "ping_ack" if flags & ACK else "ping", "payload": payload.hex()}
        if kind == WINDOW_UPDATE:
            return None
        return {"type": "other", "kind": kind}

    def report(self, **extra):
        out = {"alpn": self.alpn, "events": self.events, "closed": self.closed, "sent_bytes": self.sent_bytes}
        out.update(extra)
        print(json.dumps(out))


def is_goaway(e):
    return e["type"] == "goaway"


def main():
    host, port, sni, ca, scenario = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    arg = sys.argv[6] if len(sys.argv) > 6 else ""
    authority = sni
    preface = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" if scenario == "conformance:bad_preface" else PREFACE
    c = Conn(host, port, sni, ca, window=0 if scenario == "zero_window" else None, preface=preface)

    if scenario == "get":
        # A plain request: the baseline every other scenario is judged by.
        c.request(1, arg or "/", authority)
        c.read_events(until=lambda e: e["type"] == "data" and e["end"] or e["type"] == "headers" and e["end"])

    elif scenario == "rapid_reset":
        # CVE-2023-44487: open and cancel streams as fast as possible.
        sid = 1
        for _ in range(int(arg or "5000")):
            block = c.headers_block([(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", "/slow")])
            if not c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, block) + frame(RST_STREAM, 0, sid, struct.pack(">I", 0x8))):
                break
            sid += 2
        c.read_events(until=is_goaway)
        c.report(streams=(sid - 1) // 2)
        return

    elif scenario == "continuation_flood":
        # CVE-2024-27316 family: a header block that never ends.
        block = c.headers_block([(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", "/cont")])
        c.send(frame(HEADERS, 0, 1, block))
        piece = b"a" * 16384
        for _ in range(int(arg or "2000")):
            if not c.send(frame(CONTINUATION, 0, 1, piece)):
                break
        c.read_events(quiet=2.0)

    elif scenario == "hpack_bomb":
        # One 3 KB field in the dynamic table (an honest request), then a
        # request referencing it 5,000 times: 15 MB of fields decoded from
        # 5 KB sent.
        fields = [(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", "/bomb")]
        first = c.encoder.encode(fields + [("x-bomb", "b" * 3000)])
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, first))
        c.read_events(quiet=1.0, until=lambda e: e["type"] == "data" and e["end"])
        # Everything below is in the table already: the block adds no
        # entry, so index 62 (the newest) stays the 3 KB field.
        index = bytes([0x80 | 62])
        block = c.encoder.encode(fields) + index * 5000
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, block))
        c.read_events(quiet=2.0)

    elif scenario in ("settings_flood", "ping_flood", "window_update_flood"):
        one = {
            "settings_flood": settings([(0x3, 100)]),
            "ping_flood": frame(PING, 0, 0, b"12345678"),
            "window_update_flood": frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)),
        }[scenario]
        batch = one * 1000
        for _ in range(int(arg or "200")):
            if not c.send(batch):
                break
        c.read_events(quiet=1.0, limit=10.0)

    elif scenario == "zero_window":
        # The client's windows stay at 0: responses must wait, bounded.
        for i in range(int(arg or "20")):
            c.request(1 + 2 * i, "/big", authority)
        c.read_events(quiet=2.0)
        c.report(holding=True)
        # Hold the connection (and its unsent responses) until told to
        # stop: the test measures the server meanwhile.
        sys.stdout.flush()
        sys.stdin.readline()
        return

    elif scenario == "max_streams":
        # More streams than SETTINGS_MAX_CONCURRENT_STREAMS, all waiting.
        c.read_events(quiet=0.5, until=lambda e: e["type"] == "settings")
        for i in range(int(arg or "150")):
            c.request(1 + 2 * i, "/slow", authority)
        c.read_events(quiet=2.0)

    elif scenario == "idle":
        # The preface and nothing else: the server must close.
        c.read_events(quiet=30.0, until=is_goaway, limit=30.0)

    elif scenario == "smuggle":
        # A request HTTP/1.1 could be smuggled with (ARG names it), on a
        # connection of its own: some are connection errors.
        cases = {
            "cl_longer_data": ([("content-length", "5")], [b"hello", b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"]),
            "cl_shorter_data": ([("content-length", "50")], [b"hello"]),
            "transfer_encoding": ([("transfer-encoding", "chunked")], [b"0\r\n\r\n"]),
            "crlf_in_value": ([("x-split", "a\r\nx-injected: 1")], None),
            "lf_in_value": ([("x-split", "a\nx-injected: 1")], None),
            "nul_in_value": ([("x-nul", "a\x00b")], None),
            "colon_in_name": ([("x:colon", "1")], None),
            "uppercase_name": ([("X-Upper", "1")], None),
            "connection_header": ([("connection", "keep-alive")], None),
            "te_gzip": ([("te", "gzip")], None),
            "upgrade_header": ([("upgrade", "websocket")], None),
            "host_disagrees": ([("host", "other.test.proxy.test")], None),
            "space_in_path": ([], None),
            "duplicate_path": ([(":path", "/dup2")], None),
            "pseudo_after_regular": ([("x-a", "1"), (":status", "200")], None),
            "crlf_in_authority": ([], None),
        }
        extra, body = cases[arg]
        path = f"/smuggle/{arg}"
        auth = authority
        if arg == "space_in_path":
            path = f"/smuggle/{arg} HTTP/1.1\r\nx: y"
        if arg == "crlf_in_authority":
            auth = authority + "\r\nx-injected: 1"
        fields = [(":method", "POST" if body else "GET"), (":scheme", "https"), (":authority", auth), (":path", path)]
        if arg == "duplicate_path":
            fields = fields[:3] + extra + fields[3:]
        else:
            fields = fields + extra
        c.send(frame(HEADERS, END_HEADERS | (0 if body else END_STREAM), 1, c.headers_block(fields)))
        for i, piece in enumerate(body or []):
            c.send(frame(DATA, END_STREAM if i == len(body) - 1 else 0, 1, piece))
        c.read_events(quiet=2.0, until=lambda e: e["type"] in ("goaway", "rst") or e["type"] == "data" and e["end"])

    elif scenario.startswith("conformance:"):
        conformance(c, scenario.split(":", 1)[1], authority)

    else:
        raise SystemExit(f"unknown scenario {scenario}")
    c.report()


def conformance(c, case, authority):
    """RFC 9113 frame and stream rules; each sends one violation (or one
    legal oddity) after the settings exchange."""
    c.read_events(quiet=0.5, until=lambda e: e["type"] == "settings")
    if case == "frame_too_large":  # §4.2: over SETTINGS_MAX_FRAME_SIZE
        c.request(1, "/", authority, end_stream=False)
        c.send(frame(DATA, END_STREAM, 1, b"x" * 16385))
    elif case == "data_on_stream_0":  # §6.1
        c.send(frame(DATA, 0, 0, b"x"))
    elif case == "headers_on_even_stream":  # §5.1.1
        c.request(2, "/", authority)
    elif case == "stream_id_goes_down":  # §5.1.1
        c.request(5, "/", authority)
        c.request(3, "/", authority)
    elif case == "settings_enable_push_2":  # §6.5.2
        c.send(settings([(0x2, 2)]))
    elif case == "settings_window_too_large":  # §6.5.2
        c.send(settings([(0x4, 2**31)]))
    elif case == "settings_bad_length":  # §6.5
        c.send(frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00"))
    elif case == "settings_ack_with_payload":  # §6.5
        c.send(frame(SETTINGS, ACK, 0, b"\x00\x03\x00\x00\x00\x01"))
    elif case == "settings_on_stream":  # §6.5
        c.send(frame(SETTINGS, 0, 1, b""))
    elif case == "ping_bad_length":  # §6.7
        c.send(frame(PING, 0, 0, b"1234567"))
    elif case == "ping_on_stream":  # §6.7
        c.send(frame(PING, 0, 1, b"12345678"))
    elif case == "ping_answered":  # §6.7
        c.send(frame(PING, 0, 0, b"palisade"))
        c.read_events(until=lambda e: e["type"] == "ping_ack")
        return
    elif case == "window_update_zero":  # §6.9
        c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)))
    elif case == "window_update_overflow":  # §6.9.1
        c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1)))
        c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1)))
    elif case == "data_after_end_stream":  # §5.1 half-closed (remote)
        c.request(1, "/slow", authority)
        c.send(frame(DATA, 0, 1, b"x"))
    elif case == "bad_hpack_index":  # §4.3: index 0 is invalid
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x80"))
    elif case == "continuation_without_headers":  # §6.10
        c.send(frame(CONTINUATION, END_HEADERS, 1, c.headers_block([(":method", "GET")])))
    elif case == "interleaved_frame_in_header_block":  # §4.3
        block = c.headers_block([(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", "/")])
        c.send(frame(HEADERS, END_STREAM, 1, block[:3]))
        c.send(frame(PING, 0, 0, b"12345678"))
    elif case == "rst_on_idle_stream":  # §6.4
        c.send(frame(RST_STREAM, 0, 1, struct.pack(">I", 0x8)))
    elif case == "priority_self_dependency":  # §5.3.1
        c.send(frame(PRIORITY, 0, 1, struct.pack(">IB", 1, 16)))
    elif case == "unknown_frame_ignored":  # §4.1, §5.5
        c.send(frame(0xEE, 0, 0, b"whatever"))
        c.request(1, "/", authority)
        c.read_events(until=lambda e: e["type"] in ("data", "headers") and e["end"])
        return
    elif case == "missing_pseudo_header":  # §8.3.1: no :path
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.headers_block([(":method", "GET"), (":scheme", "https"), (":authority", authority)])))
    elif case == "bad_preface":  # §3.4
        pass
    else:
        raise SystemExit(f"unknown conformance case {case}")
    c.read_events(quiet=1.0, until=lambda e: e["type"] in ("goaway", "rst"))


if __name__ == "__main__":
    main()
