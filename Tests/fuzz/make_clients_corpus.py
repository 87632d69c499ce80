"""Regenerates the jaeger, zipkin_proto and zipkin_v1 fuzz corpora from real clients (Tests/e2e/clients/):
what each sends, captured on 127.0.0.1. Jaeger inputs carry the harness's first byte (0 an HTTP
batch, 1 a compact agent message, 2 a binary one).
Run with the clients venv: build/clients-venv/bin/python Tests/fuzz/make_clients_corpus.py Tests/fuzz/corpus"""
import http.server
import os
import socket
import subprocess
import sys
import threading

out = sys.argv[1]
here = os.path.join(os.path.dirname(__file__), "..", "e2e", "clients")
captured = []  # (corpus, bytes)


class Capture(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers["Content-Type"] == "application/x-protobuf":
            captured.append(("zipkin_proto", body))
        elif self.path == "/api/v1/spans":
            captured.append(("zipkin_v1", body))
        elif self.path == "/api/traces":
            captured.append(("jaeger", b"\x00" + body))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def udp(prefix):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))

    def read():
        while True:
            captured.append(("jaeger", prefix + s.recvfrom(65536)[0]))

    threading.Thread(target=read, daemon=True).start()
    return s.getsockname()[1]


server = http.server.HTTPServer(("127.0.0.1", 0), Capture)
threading.Thread(target=server.serve_forever, daemon=True).start()
compact, binary = udp(b"\x01"), udp(b"\x02")
http = f"http://127.0.0.1:{server.server_port}"
for client, args in [("jaeger_clients.py", ["otel-collector", f"{http}/api/traces"]), ("jaeger_clients.py", ["otel-agent", compact]),
                     ("jaeger_clients.py", ["jaeger-client", compact]), ("jaeger_clients.py", ["binary-agent", binary]),
                     ("zipkin_clients.py", ["otel-proto", f"{http}/api/v2/spans"]),
                     ("zipkin_clients.py", ["py-zipkin", "V2_PROTO3", server.server_port]),
                     ("zipkin_clients.py", ["py-zipkin", "V1_JSON", server.server_port])]:
    subprocess.run([sys.executable, os.path.join(here, client), *map(str, args)], check=True, capture_output=True, timeout=60)
for n, (corpus, body) in enumerate(captured):
    os.makedirs(os.path.join(out, corpus), exist_ok=True)
    with open(os.path.join(out, corpus, f"client-{n}"), "wb") as f:
        f.write(body)
print(f"{len(captured)} inputs")
