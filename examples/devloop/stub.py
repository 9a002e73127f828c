"""A stand-in for a service the web app calls: it warms up for a second
(answering /health with 503), then serves /health and /rates."""
import http.server
import sys
import time

port = int(sys.argv[1])
started = time.monotonic()
RATES = "EUR,1.0\nUSD,1.08\nGBP,0.85\n"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        warm = time.monotonic() - started >= 1.0
        if self.path == "/health":
            body, code = (b"ok\n", 200) if warm else (b"warming up\n", 503)
        elif self.path == "/rates" and warm:
            body, code = RATES.encode(), 200
        else:
            body, code = b"not here\n", 404
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", port), Handler)
print(f"stub on http://127.0.0.1:{port}, warming up", flush=True)
server.serve_forever()
