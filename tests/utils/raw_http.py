"""A request sent byte by byte over a socket: bodies larger than any limit, streamed in
chunks, stopping as soon as the server answers (httpx would raise on the reset that follows an
early answer and lose the status)."""

from __future__ import annotations

import select
import socket
from urllib.parse import urlsplit


def stream_chunked(url: str, path: str, total_bytes: int, *, token: str | None = None,
                   chunk_bytes: int = 1 << 20) -> tuple[int, int]:
    """POST `total_bytes` of JSON-ish filler with Transfer-Encoding: chunked and no length.
    Returns (status, bytes sent before the answer)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
    headers = [f"POST {path} HTTP/1.1", f"Host: {parts.hostname}",
               "Content-Type: application/json", "Transfer-Encoding: chunked"]
    if token is not None:
        headers.append(f"Authorization: Bearer {token}")
    sent = 0
    chunk = b'{"tags": {"x": "' + b"y" * chunk_bytes
    try:
        sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        while sent < total_bytes and not _readable(sock):
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
        if sent >= total_bytes:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed; its answer is in the socket
    status_line = _read_line(sock)
    sock.close()
    return int(status_line.split()[1]), sent


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def _read_line(sock: socket.socket) -> str:
    data = b""
    while b"\r\n" not in data:
        piece = sock.recv(4096)
        if not piece:
            break
        data += piece
    return data.split(b"\r\n", 1)[0].decode()


def send_raw(url: str, method: str, path: str, headers: list[str]) -> tuple[int, str]:
    """One request with exactly these header lines (repeats kept, as no client library sends
    them). Returns (status, body)."""
    parts = urlsplit(url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.hostname}", "Connection: close",
             "Content-Length: 0", *headers]
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while piece := sock.recv(65536):
            data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")
