"""A WebSocket client in the standard library only, run as another OS user in tests.

``python3 raw_ws_client.py [--tls CA_PEM] [--host-port N] HOST PORT ORIGIN [METHOD ...]``:
(over TLS trusting only the CA given as PEM text, when ``--tls``) opens the handshake with
that Origin (and a Host header naming port N, when ``--host-port``) and, if the agent
upgrades, calls each METHOD (no params) and reads its reply. Prints one JSON object:
``status`` (HTTP status of the handshake), ``headers``, ``raw`` (every byte received, as
text), ``replies`` (the decoded JSON-RPC replies), ``tls`` (the TLS version, over TLS) and
``error`` (if any). Stdlib only, because the project's virtualenv may not be readable by
that user.
"""

import base64
import json
import os
import socket
import ssl
import struct
import sys


def frame(text):
    payload = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_exact(sock, count, sink):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
        sink.append(chunk)
    return data


def read_frame(sock, sink):
    first, second = read_exact(sock, 2, sink)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack(">H", read_exact(sock, 2, sink))[0]
    elif length == 127:
        length = struct.unpack(">Q", read_exact(sock, 8, sink))[0]
    return first & 0x0F, read_exact(sock, length, sink)


def main():
    args = sys.argv[1:]
    ca_pem, host_port = None, None
    while args and args[0].startswith("--"):
        option, value = args.pop(0), args.pop(0)
        if option == "--tls":
            ca_pem = value
        elif option == "--host-port":
            host_port = int(value)
    host, port, origin, methods = args[0], int(args[1]), args[2], args[3:]
    result = {"status": None, "headers": {}, "raw": "", "replies": [], "error": None}
    received = []
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    named = host_port or port
    host_header = f"[{host}]:{named}" if ":" in host else f"{host}:{named}"
    try:
        with socket.socket(family, socket.SOCK_STREAM) as plain:
            plain.settimeout(10)
            plain.connect((host, port))
            sock = plain
            if ca_pem is not None:
                sock = ssl.create_default_context(cadata=ca_pem).wrap_socket(
                    plain, server_hostname=host)
                result["tls"] = sock.version()
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(
                (
                    "GET / HTTP/1.1\r\n"
                    f"Host: {host_header}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    f"Origin: {origin}\r\n\r\n"
                ).encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received.append(chunk)
                head += chunk
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            if lines and lines[0].startswith("HTTP/1.1 "):
                result["status"] = int(lines[0].split()[1])
            for line in lines[1:]:
                name, _, value = line.partition(":")
                result["headers"][name.strip().lower()] = value.strip()
            if result["status"] == 101:
                for number, method in enumerate(methods, 1):
                    request = {"jsonrpc": "2.0", "id": number, "method": method, "params": {}}
                    sock.sendall(frame(json.dumps(request)))
                    while True:
                        opcode, payload = read_frame(sock, received)
                        if opcode == 1:
                            message = json.loads(payload)
                            if message.get("id") == number:
                                result["replies"].append(message)
                                break
                        elif opcode == 8:
                            raise EOFError("closed by the agent")
            else:  # the rest of a refusal, to see everything the agent says
                while True:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    received.append(chunk)
    except (OSError, EOFError, ValueError) as exc:  # ssl.SSLError is an OSError
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["raw"] = b"".join(received).decode("utf-8", "replace")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
