#!/usr/bin/env python3
"""Socket helpers for the namespace tests of the tgp tunnel.

Every command is bounded in time and prints one line of results.

  tools.py tcp-sink PORT TIMEOUT              receive one TCP stream; print "bytes=N sha256=H"
  tools.py tcp-source HOST PORT FILE TIMEOUT  send FILE over TCP
  tools.py udp-sink PORT SECONDS DEADLINE_MS [SENT]
                                              count timestamped datagrams; print on-time share
                                              (of SENT when given, else of the highest
                                              sequence number seen + 1)
  tools.py udp-source HOST PORT SECONDS HZ    send 100-byte timestamped datagrams at HZ
  tools.py sniff IFACE PORT COUNT TIMEOUT OUT capture UDP payloads to/from PORT (AF_PACKET)
  tools.py replay HOST PORT FILE SOURCE_IP    send captured payloads from SOURCE_IP
  tools.py tcp-hash-server PORT REPLY TIMEOUT  per connection: read to EOF, answer
                                              "COUNT SHA256\n" and REPLY more bytes, close
  tools.py tcp-clients HOST PORT N PARALLEL SIZE REPLY TIMEOUT
                                              N connections (PARALLEL at a time) to a
                                              hash server; print "ok=N failed=M"
  tools.py tcp-expect-reset HOST PORT TIMEOUT connect, send, expect a reset; print the outcome
  tools.py tcp-slow-sink PORT BYTES_PER_S SECONDS  read one connection slowly
  tools.py tcp-blast HOST PORT SECONDS        write as fast as the socket takes; print bytes
"""

import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time


def tcp_sink(port, timeout):
    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.bind(("::", port))
    server.listen(1)
    server.settimeout(timeout)
    connection, _ = server.accept()
    connection.settimeout(timeout)
    digest = hashlib.sha256()
    total = 0
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        chunk = connection.recv(1 << 16)
        if not chunk:
            break
        digest.update(chunk)
        total += len(chunk)
    print(f"bytes={total} sha256={digest.hexdigest()}", flush=True)


def tcp_source(host, port, path, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = socket.create_connection((host, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    connection.settimeout(timeout)
    start = time.monotonic()
    with open(path, "rb") as source:
        while True:
            chunk = source.read(1 << 16)
            if not chunk:
                break
            connection.sendall(chunk)
    connection.shutdown(socket.SHUT_WR)
    # Wait for the sink to close, so the time covers delivery.
    while connection.recv(1 << 16):
        pass
    print(f"seconds={time.monotonic() - start:.2f}", flush=True)


def udp_sink(port, seconds, deadline_ms, expected=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(0.5)
    seen = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data, _ = sock.recvfrom(2048)
        except socket.timeout:
            continue
        if len(data) < 16:
            continue
        sequence, sent = struct.unpack("!Qd", data[:16])
        latency_ms = (time.time() - sent) * 1000.0
        if sequence not in seen:
            seen[sequence] = latency_ms
    total = expected if expected is not None else (max(seen) + 1 if seen else 0)
    on_time = sum(1 for latency in seen.values() if latency <= deadline_ms)
    latencies = sorted(seen.values())
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")
    share = on_time / total if total else 0.0
    print(f"sent~={total} received={len(seen)} on_time={share:.4f} p99_ms={p99:.1f}", flush=True)


def udp_source(host, port, seconds, hz):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    interval = 1.0 / hz
    count = int(seconds * hz)
    start = time.monotonic()
    for sequence in range(count):
        target = start + sequence * interval
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        payload = struct.pack("!Qd", sequence, time.time()).ljust(100, b"\0")
        try:
            sock.sendto(payload, (host, port))
        except OSError:
            pass
    print(f"sent={count}", flush=True)


def sniff(interface, port, count, timeout, out):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    sock.bind((interface, 0x0800))
    sock.settimeout(1.0)
    payloads = []
    end = time.monotonic() + timeout
    while len(payloads) < count and time.monotonic() < end:
        try:
            packet = sock.recv(65536)
        except socket.timeout:
            continue
        if len(packet) < 28 or packet[9] != 17:
            continue
        header = (packet[0] & 0x0F) * 4
        source_port, destination_port = struct.unpack("!HH", packet[header : header + 4])
        if port in (source_port, destination_port):
            payloads.append(packet[header + 8 :].hex())
    with open(out, "w") as f:
        json.dump(payloads, f)
    print(f"captured={len(payloads)}", flush=True)


def replay(host, port, path, source_ip):
    with open(path) as f:
        payloads = [bytes.fromhex(p) for p in json.load(f)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source_ip, 0))
    for payload in payloads:
        sock.sendto(payload, (host, port))
        time.sleep(0.001)
    print(f"replayed={len(payloads)}", flush=True)


def listener(port):
    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.bind(("::", port))
    server.listen(1024)
    return server


def tcp_hash_server(port, reply, timeout):
    server = listener(port)
    server.settimeout(0.5)
    end = time.monotonic() + timeout
    answer = os.urandom(min(reply, 1 << 20)) if reply else b""

    def serve(connection):
        try:
            connection.settimeout(60)
            digest = hashlib.sha256()
            count = 0
            while True:
                chunk = connection.recv(1 << 16)
                if not chunk:
                    break
                digest.update(chunk)
                count += len(chunk)
            connection.sendall(f"{count} {digest.hexdigest()}\n".encode())
            left = reply
            while left > 0:
                piece = answer[: min(left, len(answer))]
                connection.sendall(piece)
                left -= len(piece)
        except OSError:
            pass
        finally:
            connection.close()

    served = 0
    while time.monotonic() < end:
        try:
            connection, _ = server.accept()
        except socket.timeout:
            continue
        served += 1
        threading.Thread(target=serve, args=(connection,), daemon=True).start()
    print(f"served={served}", flush=True)


def tcp_clients(host, port, count, parallel, size, reply, timeout):
    lock = threading.Lock()
    results = {"ok": 0, "failed": 0, "first_error": ""}
    next_index = [0]
    deadline = time.monotonic() + timeout

    def one(index):
        payload = os.urandom(size)
        expected = f"{size} {hashlib.sha256(payload).hexdigest()}"
        connection = socket.create_connection((host, port), timeout=30)
        try:
            connection.settimeout(max(1.0, deadline - time.monotonic()))
            connection.sendall(payload)
            connection.shutdown(socket.SHUT_WR)
            received = bytearray()
            while True:
                chunk = connection.recv(1 << 16)
                if not chunk:
                    break
                received += chunk
        finally:
            connection.close()
        line, _, rest = bytes(received).partition(b"\n")
        if line.decode(errors="replace") != expected:
            raise ValueError(f"connection {index}: server saw {line[:80]!r}, sent {expected}")
        if len(rest) != reply:
            raise ValueError(f"connection {index}: reply of {len(rest)} bytes, expected {reply}")

    def worker():
        while time.monotonic() < deadline:
            with lock:
                index = next_index[0]
                if index >= count:
                    return
                next_index[0] += 1
            try:
                one(index)
                with lock:
                    results["ok"] += 1
            except (OSError, ValueError) as error:
                with lock:
                    results["failed"] += 1
                    if not results["first_error"]:
                        results["first_error"] = repr(error)

    start = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 1)
    missing = count - results["ok"] - results["failed"]
    print(
        f"ok={results['ok']} failed={results['failed'] + missing} "
        f"seconds={time.monotonic() - start:.2f} first_error={results['first_error']}",
        flush=True,
    )


def tcp_expect_reset(host, port, timeout):
    start = time.monotonic()
    try:
        connection = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        print(f"outcome=refused seconds={time.monotonic() - start:.2f}", flush=True)
        return
    except ConnectionResetError:
        # Accepted locally and reset before connect() returned to us.
        print(f"outcome=reset seconds={time.monotonic() - start:.2f} (at connect)", flush=True)
        return
    except OSError as error:
        print(f"outcome=connect-error:{error!r} seconds={time.monotonic() - start:.2f}", flush=True)
        return
    connection.settimeout(timeout)
    try:
        connection.sendall(b"hello")
        data = connection.recv(100)
        outcome = "eof" if not data else "data"
    except ConnectionResetError:
        outcome = "reset"
    except socket.timeout:
        outcome = "hang"
    except OSError as error:
        outcome = f"error:{error!r}"
    print(f"outcome={outcome} seconds={time.monotonic() - start:.2f}", flush=True)


def tcp_slow_sink(port, rate, seconds):
    server = listener(port)
    server.settimeout(seconds)
    connection, _ = server.accept()
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    connection.settimeout(1.0)
    total = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        allowed = int((time.monotonic() - start) * rate) - total
        if allowed <= 0:
            time.sleep(0.01)
            continue
        try:
            chunk = connection.recv(min(allowed, 1 << 16))
        except socket.timeout:
            continue
        if not chunk:
            break
        total += len(chunk)
    print(f"read={total}", flush=True)
    connection.close()


def tcp_blast(host, port, seconds):
    connection = socket.create_connection((host, port), timeout=10)
    connection.setblocking(False)
    block = os.urandom(1 << 16)
    written = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            written += connection.send(block)
        except BlockingIOError:
            time.sleep(0.005)
        except OSError:
            break
    print(f"written={written}", flush=True)
    connection.close()


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "tcp-sink":
        tcp_sink(int(args[0]), float(args[1]))
    elif command == "tcp-source":
        tcp_source(args[0], int(args[1]), args[2], float(args[3]))
    elif command == "udp-sink":
        udp_sink(int(args[0]), float(args[1]), float(args[2]), int(args[3]) if len(args) > 3 else None)
    elif command == "udp-source":
        udp_source(args[0], int(args[1]), float(args[2]), float(args[3]))
    elif command == "sniff":
        sniff(args[0], int(args[1]), int(args[2]), float(args[3]), args[4])
    elif command == "replay":
        replay(args[0], int(args[1]), args[2], args[3])
    elif command == "tcp-hash-server":
        tcp_hash_server(int(args[0]), int(args[1]), float(args[2]))
    elif command == "tcp-clients":
        tcp_clients(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]), int(args[5]), float(args[6]))
    elif command == "tcp-expect-reset":
        tcp_expect_reset(args[0], int(args[1]), float(args[2]))
    elif command == "tcp-slow-sink":
        tcp_slow_sink(int(args[0]), float(args[1]), float(args[2]))
    elif command == "tcp-blast":
        tcp_blast(args[0], int(args[1]), float(args[2]))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
