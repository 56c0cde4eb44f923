#!/usr/bin/python3
"""A fault-injecting HTTP proxy for S3 tests, on loopback only.

Forwards every request unchanged (Host header included, so SigV4
signatures stay valid) to an upstream endpoint, except that the first
--fail-first requests are answered by the proxy itself with an S3 error
(--status, default 503 SlowDown).  With --chaos P (and --seed), every later
request meets, with probability P, one fault drawn from --faults:

    reset     the connection is closed without an answer
    500, 503  an S3 InternalError / SlowDown answer
    slowdown  a 503 with <Code>SlowDown</Code>
    cut       the upstream answer with its body cut in half, full Content-Length
    short     the upstream answer with half its body and a matching Content-Length
    slow      the upstream answer after a pause of --slow seconds

Prints "listening PORT" once ready and one line per request
("<n> <method> <path> -> <status or fault>") on stdout.

    fault_proxy.py --upstream http://127.0.0.1:8080 [--port 0] [--fail-first N]
                   [--chaos P --seed S --faults reset,503,cut,...] [--slow SECONDS]
"""
import argparse
import http.client
import random
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ERRORS = {500: "InternalError", 503: "SlowDown", 403: "AccessDenied"}
ALL_FAULTS = ["reset", "500", "503", "slowdown", "cut", "short", "slow"]


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    count = 0

    def log_message(self, fmt, *args):
        pass

    def handle_any(self):
        with Proxy.lock:
            Proxy.count += 1
            n = Proxy.count
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.server.pick_fault(n)
        if fault == "reset":
            print(f"{n} {self.command} {self.path} -> reset", flush=True)
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault in ("500", "503", "slowdown"):
            self.answer_error(n, 500 if fault == "500" else 503)
            return
        if n <= self.server.fail_first:
            self.answer_error(n, self.server.status)
            return
        if fault == "slow":
            time.sleep(self.server.slow)
        status, headers, payload = self.forward(body)
        declared = len(payload)
        if fault in ("cut", "short") and self.command != "HEAD" and len(payload) > 1:
            payload = payload[: len(payload) // 2]
            if fault == "short":
                declared = len(payload)
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", dict((k.lower(), v) for k, v in headers)
                             .get("content-length", "0"))
        else:
            self.send_header("Content-Length", str(declared))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        if fault == "cut":
            self.close_connection = True
        print(f"{n} {self.command} {self.path} -> {status}{' ' + fault if fault else ''}",
              flush=True)

    def answer_error(self, n, status):
        payload = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{ERRORS.get(status, 'Error')}"
                   f"</Code><Message>injected by fault_proxy</Message></Error>").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        print(f"{n} {self.command} {self.path} -> {status}", flush=True)

    def forward(self, body):
        up = self.server.upstream
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                conn.putheader(k, v)
            conn.endheaders(body)
            r = conn.getresponse()
            payload = r.read()
            headers = r.getheaders()
            if self.command != "HEAD":  # a HEAD's Content-Length is the object's
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(payload))))
            return r.status, headers, payload
        finally:
            conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--status", type=int, default=503)
    ap.add_argument("--chaos", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--faults", default=",".join(ALL_FAULTS))
    ap.add_argument("--slow", type=float, default=2.0)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Proxy)
    srv.daemon_threads = True
    srv.upstream = urllib.parse.urlsplit(a.upstream)
    srv.fail_first = a.fail_first
    srv.status = a.status
    srv.slow = a.slow
    rng = random.Random(a.seed)
    faults = [f for f in a.faults.split(",") if f]
    rng_lock = threading.Lock()

    def pick_fault(n):
        if n <= a.fail_first or not a.chaos:
            return None
        with rng_lock:
            return rng.choice(faults) if rng.random() < a.chaos else None
    srv.pick_fault = pick_fault
    print(f"listening {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
