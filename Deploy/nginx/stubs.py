#!/usr/bin/env python3
"""Stub servers for Deploy/nginx/check.

  stubs.py latchkey --port P --control FILE --log FILE --proxy-key KEY [--cert C --key K]
      A stand-in for Latchkey's injection endpoint. For every request it reads
      CONTROL_FILE (JSON) and answers accordingly:
        {"mode": "ok", "header": "Authorization", "value": "Bearer live-token-1"}
            200, the header as a response header plus the JSON body
            {"headers": {...}, "expires_at": ...} (only if the proxy key matches;
            otherwise 401 INVALID_KEY like the real endpoint); HEAD gets the
            same status and headers without the body
        {"mode": "fail", "status": 429, "code": "RATE_LIMITED", "retry_after": 30}
            that status, `Latchkey-Error: <code>` (and Retry-After if given)
            and a JSON error body
        {"mode": "close"}
            closes the connection without answering (Latchkey unreachable)
      Every request is appended to the log as a JSON line: method, path,
      headers, body length, client port (to see connection reuse).

  stubs.py upstream --port P --log FILE [--cert C --key K]
      A stand-in for the real API: answers every request with 200 and a JSON
      echo of what it received (method, path, headers as [name, value] pairs,
      body length and SHA-256), and logs the same line. A path starting with
      /status/NNN answers NNN instead.

  With --cert and --key (PEM files) either stub serves HTTPS.
"""

import argparse
import hashlib
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def append(log_file, record):
    with LOCK, open(log_file, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_body(handler):
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                # trailers until an empty line
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return body
            body += handler.rfile.read(size)
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


class Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def log_message(self, fmt, *args):  # quiet
        pass

    def finish(self):
        try:
            super().finish()
        except OSError:  # the "close" mode shut the socket down already
            pass

    def record(self, body):
        return {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "client_port": self.client_address[1],
            "time": time.time(),
        }

    def send_json(self, status, obj, extra_headers=()):
        data = (json.dumps(obj) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":  # HEAD: same headers, no body
            self.wfile.write(data)

    def do_GET(self):
        self.handle_any()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET


class Latchkey(Base):
    control_file = ""
    log_file = ""
    proxy_key = ""

    def handle_any(self):
        body = read_body(self)
        append(self.log_file, self.record(body))
        with open(self.control_file) as f:
            control = json.load(f)
        mode = control.get("mode")
        if mode == "close":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if self.headers.get("Authorization") != "Bearer " + self.proxy_key:
            return self.fail(401, "INVALID_KEY", "invalid proxy key")
        if not self.path.startswith("/v1/inject/"):
            return self.fail(404, "NOT_FOUND", "no such route")
        if mode == "fail":
            return self.fail(control["status"], control["code"], "stubbed failure",
                             control.get("retry_after"))
        header, value = control["header"], control["value"]
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        self.send_json(200, {"headers": {header: value}, "expires_at": expires},
                       [(header, value), ("Cache-Control", "no-store")])

    def fail(self, status, code, message, retry_after=None):
        extra = [("Latchkey-Error", code)]
        if status == 401:  # as Latchkey's ErrorMiddleware does for INVALID_KEY
            extra.append(("WWW-Authenticate", "Bearer"))
        if retry_after is not None:
            extra.append(("Retry-After", str(retry_after)))
        self.send_json(status, {"error": {"code": code, "message": message}}, extra)


class Upstream(Base):
    log_file = ""

    def handle_any(self):
        body = read_body(self)
        rec = self.record(body)
        append(self.log_file, rec)
        status = 200
        if self.path.startswith("/status/"):
            status = int(self.path.split("/")[2])
        self.send_json(status, rec)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["latchkey", "upstream"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--control")
    parser.add_argument("--proxy-key")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    if args.kind == "latchkey":
        if not args.control or not args.proxy_key:
            parser.error("latchkey needs --control and --proxy-key")
        Latchkey.control_file, Latchkey.log_file, Latchkey.proxy_key = args.control, args.log, args.proxy_key
        handler = Latchkey
    else:
        Upstream.log_file = args.log
        handler = Upstream
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
