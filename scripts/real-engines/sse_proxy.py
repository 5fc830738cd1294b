#!/usr/bin/env python3
"""A recording HTTP/1.1 proxy for auditing a benchmark client against a real server.

It sits between the client and the server on 127.0.0.1, forwards every request, and for each
streamed (SSE) response writes what the server really sent: every event, when it arrived,
whether it carried text, was role-only, empty, or usage-only, and the running usage. A checker
then compares that capture with the client's journal (check_vllm_run.py audit).

With --role-delay-ms D it also holds a chat stream for D ms right after a role-only first event
(forwarding that event at once). A client that takes the time of the first token from the first
text event then shows `first_token - headers >= D`; one that counts the role chunk as the first
token shows almost nothing. That is a test of cause, not of a timing guess.

Every SSE event is forwarded as its own HTTP chunk, unchanged, so the client sees the same
events as it would without the proxy; only their timing can differ (by the delay, and by the
proxy's own microseconds).

Usage:
    sse_proxy.py --upstream 127.0.0.1:PORT --capture FILE.jsonl [--port-file FILE]
                 [--listen-port 0] [--role-delay-ms 0]
Stdlib only. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length",
              "proxy-connection", "upgrade", "te", "trailer"}


class BadRequest(Exception):
    pass


async def read_head(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]]] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial.strip():
            raise BadRequest("connection closed inside a message head") from e
        return None
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"malformed header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def body_pieces(reader: asyncio.StreamReader, headers: list[tuple[str, str]],
                      until_close: bool):
    """Yields the decoded body of a message, whatever its framing."""
    te = (header(headers, "transfer-encoding") or "").lower()
    length = header(headers, "content-length")
    if "chunked" in te:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                # Trailers (none expected) end with an empty line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            yield data
    elif length is not None:
        remaining = int(length)
        while remaining > 0:
            data = await reader.read(min(remaining, 65536))
            if not data:
                raise BadRequest("connection closed inside a body")
            remaining -= len(data)
            yield data
    elif until_close:
        while data := await reader.read(65536):
            yield data


def classify(data: str) -> dict:
    """What one SSE `data:` payload was, in the terms a benchmark client cares about."""
    if data.strip() == "[DONE]":
        return {"kind": "done"}
    try:
        obj = json.loads(data)
    except json.JSONDecodeError:
        return {"kind": "malformed", "data": data[:200]}
    out: dict = {}
    usage = obj.get("usage") if isinstance(obj, dict) else None
    if isinstance(usage, dict) and "completion_tokens" in usage:
        out["completion_tokens"] = usage.get("completion_tokens")
        out["prompt_tokens"] = usage.get("prompt_tokens")
    if isinstance(obj, dict) and "error" in obj:
        out["kind"] = "error"
        return out
    choices = obj.get("choices") if isinstance(obj, dict) else None
    if not choices:
        out["kind"] = "usage" if usage else "empty"
        return out
    choice = choices[0]
    delta = choice.get("delta")
    role = False
    if isinstance(delta, dict):  # chat
        role = bool(delta.get("role"))
        text = "".join(t for t in (delta.get("content"), delta.get("reasoning_content"),
                                   delta.get("reasoning")) if isinstance(t, str))
    else:  # completions
        text = choice.get("text") if isinstance(choice.get("text"), str) else ""
    out["text_len"] = len(text)
    if choice.get("finish_reason"):
        out["finish_reason"] = choice["finish_reason"]
    out["kind"] = "text" if text else ("role" if role else "empty")
    return out


class Proxy:
    def __init__(self, upstream: tuple[str, int], capture: Path, role_delay_s: float):
        self.upstream = upstream
        self.capture = capture.open("a", encoding="utf-8")
        self.role_delay_s = role_delay_s
        self.seq = 0

    def record(self, entry: dict) -> None:
        self.capture.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self.capture.flush()

    async def handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            while await self.one_exchange(creader, cwriter):
                pass
        except (BadRequest, ConnectionError, asyncio.IncompleteReadError, ValueError) as e:
            print(f"[sse-proxy] connection ended: {e}", file=sys.stderr)
        finally:
            cwriter.close()

    async def one_exchange(self, creader, cwriter) -> bool:
        head = await read_head(creader)
        if head is None:
            return False
        request_line, req_headers = head
        t_request = time.monotonic_ns()
        body = b"".join([p async for p in body_pieces(creader, req_headers, until_close=False)])
        method, path, _version = request_line.split(" ", 2)
        client_keep_alive = (header(req_headers, "connection") or "").lower() != "close"

        ureader, uwriter = await asyncio.open_connection(*self.upstream)
        try:
            out = [f"{method} {path} HTTP/1.1"]
            out += [f"{k}: {v}" for k, v in req_headers if k.lower() not in HOP_BY_HOP]
            out += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
            uwriter.write("\r\n".join(out).encode("latin-1") + body)
            await uwriter.drain()

            resp = await read_head(ureader)
            if resp is None:
                raise BadRequest("upstream closed without a response")
            status_line, resp_headers = resp
            t_headers = time.monotonic_ns()
            status = int(status_line.split(" ", 2)[1])
            out = [status_line]
            out += [f"{k}: {v}" for k, v in resp_headers if k.lower() not in HOP_BY_HOP]
            out += ["Transfer-Encoding: chunked",
                    f"Connection: {'keep-alive' if client_keep_alive else 'close'}", "", ""]
            cwriter.write("\r\n".join(out).encode("latin-1"))
            await cwriter.drain()

            is_sse = "text/event-stream" in (header(resp_headers, "content-type") or "")
            events: list[dict] = []
            buf = b""

            async def send(chunk: bytes) -> None:
                if chunk:
                    cwriter.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    await cwriter.drain()

            async for piece in body_pieces(ureader, resp_headers, until_close=True):
                if not is_sse:
                    await send(piece)
                    continue
                buf += piece.replace(b"\r\n", b"\n")
                while b"\n\n" in buf:
                    raw, buf = buf.split(b"\n\n", 1)
                    t = time.monotonic_ns()
                    await send(raw + b"\n\n")
                    data = "\n".join(line[5:].lstrip() for line in
                                     raw.decode("utf-8", "replace").split("\n")
                                     if line.startswith("data:"))
                    info = classify(data) if data else {"kind": "comment"}
                    info["t_ns"] = t - t_request
                    events.append(info)
                    if (len(events) == 1 and info["kind"] == "role"
                            and self.role_delay_s > 0):
                        info["held_ms"] = self.role_delay_s * 1e3
                        await asyncio.sleep(self.role_delay_s)
            await send(buf)
            cwriter.write(b"0\r\n\r\n")
            await cwriter.drain()
        finally:
            uwriter.close()

        self.seq += 1
        req_summary: dict = {}
        if body:
            try:
                req = json.loads(body)
                req_summary = {k: req.get(k) for k in
                               ("model", "max_tokens", "stream", "stream_options", "ignore_eos",
                                "min_tokens") if k in req}
            except (json.JSONDecodeError, AttributeError):
                req_summary = {"unparsed_bytes": len(body)}
        self.record({
            "seq": self.seq, "method": method, "path": path, "status": status,
            "request": req_summary, "headers_ns": t_headers - t_request,
            "sse": is_sse, "events": events,
        })
        return client_keep_alive


async def main_async(args) -> None:
    host, _, port = args.upstream.rpartition(":")
    proxy = Proxy((host or "127.0.0.1", int(port)), args.capture, args.role_delay_ms / 1e3)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.listen_port,
                                        limit=1 << 20)
    bound = server.sockets[0].getsockname()[1]
    if args.port_file:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(f"{bound}\n")
        tmp.replace(args.port_file)
    print(f"[sse-proxy] 127.0.0.1:{bound} -> {args.upstream}, capture {args.capture}, "
          f"role delay {args.role_delay_ms} ms", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the server")
    ap.add_argument("--capture", required=True, type=Path, help="JSONL file to append to")
    ap.add_argument("--listen-port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    ap.add_argument("--role-delay-ms", type=float, default=0.0,
                    help="hold a stream this long after a role-only first event")
    args = ap.parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
