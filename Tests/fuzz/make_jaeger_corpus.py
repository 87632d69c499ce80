"""Regenerates the jaeger fuzz corpus from real clients (Tests/e2e/clients/jaeger_clients.py):
what each sends, captured on 127.0.0.1, behind the harness's first byte (0 an HTTP batch, 1 a
compact agent message, 2 a binary one).
Run with the clients venv: build/clients-venv/bin/python Tests/fuzz/make_jaeger_corpus.py Tests/fuzz/corpus/jaeger"""
import http.server
import os
import socket
import subprocess
import sys
import threading

out = sys.argv[1]
clients = os.path.join(os.path.dirname(__file__), "..", "e2e", "clients", "jaeger_clients.py")
captured = []


class Capture(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        captured.append(b"\x00" + self.rfile.read(int(self.headers["Content-Length"])))
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
            captured.append(prefix + s.recvfrom(65536)[0])

    threading.Thread(target=read, daemon=True).start()
    return s.getsockname()[1]


server = http.server.HTTPServer(("127.0.0.1", 0), Capture)
threading.Thread(target=server.serve_forever, daemon=True).start()
compact, binary = udp(b"\x01"), udp(b"\x02")
for mode, where in [("otel-collector", f"http://127.0.0.1:{server.server_port}/api/traces"), ("otel-agent", compact),
                    ("jaeger-client", compact), ("binary-agent", binary)]:
    subprocess.run([sys.executable, clients, mode, str(where)], check=True, capture_output=True, timeout=60)
os.makedirs(out, exist_ok=True)
for n, body in enumerate(captured):
    with open(os.path.join(out, f"client-{n}"), "wb") as f:
        f.write(body)
print(f"{len(captured)} inputs")
