"""The web app under development: edit this file and dblaunch restarts it
(`watch`). It reads data/app.db (a read lock, which it gives up while the
pipeline writes: `yields`)."""
import http.server
import sqlite3
import sys

port = int(sys.argv[1])


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        db = sqlite3.connect("file:data/app.db?mode=ro", uri=True)
        orders, total = db.execute(
            "SELECT count(*), coalesce(sum(amount * rate), 0) "
            "FROM orders JOIN rates USING (currency)"
        ).fetchone()
        db.close()
        body = f"{orders} orders, {total:.2f} EUR\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", port), Handler)
print(f"web on http://127.0.0.1:{port}", flush=True)
server.serve_forever()
# edit
