"""A local OTLP/HTTP trace receiver for bench/tracing_bench.sh.

Accepts `POST /v1/traces` (application/x-protobuf), answers 200 with an empty
ExportTraceServiceResponse, and counts the requests, bytes and spans it received (spans
counted by walking the protobuf: ExportTraceServiceRequest.resource_spans(1) ->
ResourceSpans.scope_spans(2) -> ScopeSpans.spans(2)), so the benchmark can say how many
spans were really exported. Bodies are kept and decoded only at the end, so that the
receiver's own CPU use during the run is reading the requests, as a collector's would be
at the least. Writes the counts as JSON to the path given by --stats on
SIGTERM/SIGINT.

    python3 bench/otlp_sink.py --port 4318 --stats /tmp/sink.json
"""
import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATS = {"requests": 0, "bytes": 0, "spans": 0, "rejected": 0}
BODIES = []


def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf):
    """(field number, wire type, value or (start, end) of a length-delimited field)."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
            yield num, wt, v
        elif wt == 1:
            i += 8
        elif wt == 2:
            n, i = varint(buf, i)
            yield num, wt, buf[i:i + n]
            i += n
        elif wt == 5:
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wt}")


def count_spans(body):
    n = 0
    for num, wt, rs in fields(body):
        if num == 1 and wt == 2:
            for num2, wt2, ss in fields(rs):
                if num2 == 2 and wt2 == 2:
                    n += sum(1 for num3, wt3, _ in fields(ss) if num3 == 2 and wt3 == 2)
    return n


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        ok = self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
        with LOCK:
            STATS["requests"] += 1
            STATS["bytes"] += len(body)
            STATS["rejected"] += 0 if ok else 1
            if ok:
                BODIES.append(body)
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=4318)
    ap.add_argument("--stats", required=True)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)

    def stop(*_):
        with LOCK:
            for body in BODIES:
                try:
                    STATS["spans"] += count_spans(body)
                except (ValueError, IndexError):
                    STATS["rejected"] += 1
            with open(args.stats, "w") as f:
                json.dump(STATS, f)
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"otlp sink on http://127.0.0.1:{args.port}/v1/traces", flush=True)
    server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
