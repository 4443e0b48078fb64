#!/usr/bin/env python3
"""An HTTP proxy in front of the local S3 server that misbehaves on purpose.

The functions of the local stack reach S3 through it (scripts/local-stack.sh points their
AWS_ENDPOINT_URL_S3 here); everything else may keep talking to the server directly. Requests
pass through unchanged (the Host header too, so SigV4 signatures still verify), bodies are
streamed, and with no rule set the only extra cost is one stat() of the rules file per request.

Usage: s3-fault-proxy.py --listen 127.0.0.1:8334 --upstream 127.0.0.1:8333 \
           --rules FILE --log FILE

The rules file holds one rule a line; the first rule whose key substring occurs in the request
path (and that has injections left) applies to a request:

    slowdown   <count> <substring>       503 with the S3 <Code>SlowDown</Code> body (throttling)
    error500   <count> <substring>       500 with the S3 <Code>InternalError</Code> body
    stall      <count> <substring> <ms>  wait <ms> before forwarding (no response byte meanwhile)
    stall-body <count> <substring> <ms>  send the headers and half the body, wait <ms>, send the rest
    truncate   <count> <substring>       send the headers and half the body, then close the connection
    observe    <count> <substring>       pass the request through, only logging it

<count> is how many requests the rule applies to. Rewriting the file (any change of its text)
resets every count; an empty file clears all faults. Each injection appends a line
`<action> <method> <path>` to the log file, so tests can check what was injected.
"""

import argparse
import http.client
import http.server
import os
import socket
import sys
import threading
import time

# Headers that describe one hop, not the message: never forwarded.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
CHUNK_BYTES = 64 * 1024
ACTIONS = ("slowdown", "error500", "stall", "stall-body", "truncate", "observe")
ERROR_BODIES = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "error500": (500, "InternalError", "We encountered an internal error. Please try again."),
}


class Rule:
    def __init__(self, action, remaining, substring, delay_ms):
        self.action = action
        self.remaining = remaining
        self.substring = substring
        self.delay_ms = delay_ms


def parse_rules(text):
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        action = words[0]
        needs_delay = action in ("stall", "stall-body")
        if action not in ACTIONS or len(
            words
        ) != (4 if needs_delay else 3):
            print(f"s3-fault-proxy: rules line {number} ignored: {line!r}", file=sys.stderr)
            continue
        try:
            count = int(words[1])
            delay_ms = int(words[3]) if needs_delay else 0
        except ValueError:
            print(f"s3-fault-proxy: rules line {number} ignored: {line!r}", file=sys.stderr)
            continue
        rules.append(Rule(action, count, words[2], delay_ms))
    return rules


class RuleBook:
    """The rules file, re-read when it changes; counts live here, not in the file."""

    def __init__(self, path, log_path):
        self.path = path
        self.log_path = log_path
        self.lock = threading.Lock()
        self.stamp = None
        self.text = ""
        self.rules = []

    def take(self, method, path):
        try:
            info = os.stat(self.path)
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            stamp = None
        with self.lock:
            if stamp != self.stamp:
                self.stamp = stamp
                text = ""
                if stamp is not None:
                    with open(self.path, encoding="utf-8", errors="replace") as file:
                        text = file.read()
                if text != self.text:
                    self.text = text
                    self.rules = parse_rules(text)
            for rule in self.rules:
                if rule.remaining > 0 and rule.substring in path:
                    rule.remaining -= 1
                    with open(self.log_path, "a", encoding="utf-8") as log:
                        log.write(f"{rule.action} {method} {path}\n")
                    return rule
        return None


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None
    rule_book = None
    local = threading.local()

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.forward()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def read_request_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def connection_upstream(self, fresh):
        connection = getattr(self.local, "connection", None)
        if connection is None or fresh:
            if connection is not None:
                connection.close()
            host, port = self.upstream
            connection = http.client.HTTPConnection(host, port, timeout=120)
            self.local.connection = connection
        return connection

    def send_upstream(self, body):
        chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        for attempt in range(2):
            connection = self.connection_upstream(fresh=attempt > 0)
            try:
                connection.putrequest(
                    self.command, self.path, skip_host=True, skip_accept_encoding=True
                )
                for name, value in self.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        connection.putheader(name, value)
                if chunked:
                    # The body was de-chunked above; its length is now known.
                    connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body if body else None)
                return connection.getresponse()
            except (ConnectionError, http.client.HTTPException, OSError):
                # A kept-alive upstream connection may have been closed meanwhile: one retry
                # on a fresh connection.
                if attempt == 1:
                    raise
        raise RuntimeError("unreachable")

    def send_error_body(self, status, code, message):
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<Resource>{self.path}</Resource><RequestId>s3-fault-proxy</RequestId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def forward(self):
        body = self.read_request_body()
        rule = self.rule_book.take(self.command, self.path)
        action = rule.action if rule else None
        try:
            if action in ERROR_BODIES:
                self.send_error_body(*ERROR_BODIES[action])
                return
            if action == "stall":
                time.sleep(rule.delay_ms / 1000)
            try:
                response = self.send_upstream(body)
            except (ConnectionError, http.client.HTTPException, OSError) as error:
                self.send_error_body(502, "BadGateway", f"upstream: {error}")
                return
            self.relay(response, action, rule)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout fired): nothing left to answer.
            self.close_connection = True

    def relay(self, response, action, rule):
        payload = None
        length_text = response.getheader("content-length")
        if length_text is None and self.command != "HEAD":
            # Unknown length (chunked upstream): read it all so the client gets a length.
            payload = response.read()
            length_text = str(len(payload))
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if length_text is not None:
            self.send_header("Content-Length", length_text)
        self.end_headers()
        if self.command == "HEAD":
            response.read()
            return
        length = int(length_text)
        cut = length // 2 if action in ("truncate", "stall-body") else None
        sent = 0
        while sent < length:
            if payload is not None:
                chunk = payload[sent : sent + CHUNK_BYTES]
            else:
                chunk = response.read(min(CHUNK_BYTES, length - sent))
            if not chunk:
                break
            if cut is not None and sent <= cut < sent + len(chunk):
                head = chunk[: cut - sent]
                self.wfile.write(head)
                self.wfile.flush()
                if action == "truncate":
                    # Half the promised bytes, then the connection ends.
                    self.connection_upstream(fresh=True)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                time.sleep(rule.delay_ms / 1000)
                chunk = chunk[cut - sent :]
                sent = cut
                cut = None
            self.wfile.write(chunk)
            sent += len(chunk)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def address(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=address, required=True)
    parser.add_argument("--upstream", type=address, required=True)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    ProxyHandler.upstream = args.upstream
    ProxyHandler.rule_book = RuleBook(args.rules, args.log)
    server = Server(args.listen, ProxyHandler)
    print(f"s3-fault-proxy: {args.listen} -> {args.upstream}, rules {args.rules}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
