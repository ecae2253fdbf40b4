#!/usr/bin/env python3
"""A minimal OTLP/HTTP trace receiver for the tests, decoding with PyPI's
opentelemetry-proto (not the exporter's own Rust code). It listens on 127.0.0.1 at a free
port, prints `port N` on its first line, then one JSON object per received span:
{"trace_id", "span_id", "parent_span_id", "name", "kind", "attributes", "links"} (ids in
lower-case hex). With `--fail`, it answers every export with a 503; with `--quiet`, it
decodes but prints no span (a sink for the api_load benchmark)."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

FAIL = "--fail" in sys.argv
# --quiet: decode every request but print nothing per span (a sink for benchmarks).
QUIET = "--quiet" in sys.argv


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if FAIL or self.path != "/v1/traces":
            self.send_response(503 if FAIL else 404)
            self.end_headers()
            return
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in [] if QUIET else req.resource_spans:
            resource = {a.key: value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    print(json.dumps({
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": s.kind,
                        "attributes": {a.key: value(a.value) for a in s.attributes},
                        "links": [{"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()} for l in s.links],
                        "service": resource.get("service.name"),
                    }), flush=True)
        out = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"port {server.server_address[1]}", flush=True)
server.serve_forever()
