#!/usr/bin/env python3
"""Handshake floods for tunnel/tests/netns/flood (and by hand).

  flood.py capture IFACE PORT TIMEOUT OUT.json
      sniff the first tgp handshake packet carrying a commitment (artifact
      kind 0) sent to PORT on IFACE, save it as hex
  flood.py flood MODE HOST PORT SECONDS RATE CAPTURE.json [BIND_IP]
      send RATE packets/s for SECONDS to HOST:PORT from one socket:
        random  random bytes, as long as the captured packet
        replay  the captured packet, again and again
        forged  the captured packet with a fresh timestamp and a new nonce
                each time: a valid layout for the configured key, with a
                commitment its sender cannot sign
      prints sent, bytes_sent, received, bytes_received (what came back to
      the attacker's address), achieved rate
  flood.py trickle HOST PORT COUNT INTERVAL CAPTURE.json WAIT [BIND_IP]
      send the captured packet COUNT times, INTERVAL s apart, then listen
      WAIT s more; prints the same counts (the reflection measurement)

Every loop is bounded in time.
"""

import json
import os
import socket
import struct
import sys
import time

# Handshake packet: type 1, version 1, sender 32, elapsed 4, count 1; then
# per artifact kind 1, length 2, body. A commitment body: version 1,
# signer 32, peer 32, nonce 32, ephemeral 32, parameters 10, time 8, ...
HEADER = 39
NONCE_AT = 1 + 32 + 32
TIME_AT = 1 + 32 + 32 + 32 + 32 + 10


def commitment_offset(packet):
    """Offset of the commitment body in a handshake packet, or None."""
    if len(packet) < HEADER or packet[0] != 1:
        return None
    count = packet[38]
    at = HEADER
    for _ in range(count):
        if at + 3 > len(packet):
            return None
        kind = packet[at]
        (length,) = struct.unpack("!H", packet[at + 1 : at + 3])
        if kind == 0:
            return at + 3
        at += 3 + length
    return None


def capture(interface, port, timeout, out):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    sock.bind((interface, 0x0800))
    sock.settimeout(0.5)
    print("ready", flush=True)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            packet = sock.recv(65536)
        except socket.timeout:
            continue
        if len(packet) < 28 or packet[9] != 17:
            continue
        header = (packet[0] & 0x0F) * 4
        _, destination = struct.unpack("!HH", packet[header : header + 4])
        payload = packet[header + 8 :]
        if destination == port and commitment_offset(payload) is not None:
            with open(out, "w") as f:
                json.dump([payload.hex()], f)
            print("captured=1", flush=True)
            return
    print("captured=0", flush=True)
    sys.exit(1)


def load(path):
    with open(path) as f:
        return bytes.fromhex(json.load(f)[0])


def socket_for(bind_ip):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((bind_ip or "0.0.0.0", 0))
    sock.setblocking(False)
    return sock


def drain(sock, counts):
    while True:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        counts["received"] += 1
        counts["bytes_received"] += len(data)


def report(counts, seconds):
    rate = counts["sent"] / seconds if seconds > 0 else 0
    print(
        f"sent={counts['sent']} bytes_sent={counts['bytes_sent']} "
        f"received={counts['received']} bytes_received={counts['bytes_received']} "
        f"rate={rate:.0f}",
        flush=True,
    )


def flood(mode, host, port, seconds, rate, path, bind_ip=None):
    captured = load(path)
    at = commitment_offset(captured)
    sock = socket_for(bind_ip)
    target = (host, port)
    counts = {"sent": 0, "bytes_sent": 0, "received": 0, "bytes_received": 0}
    pool = [os.urandom(len(captured)) for _ in range(4096)] if mode == "random" else []
    forged = bytearray(captured)
    start = time.monotonic()
    end = start + seconds
    stamp_at = 0.0
    nonce = int.from_bytes(os.urandom(6), "big")
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * rate) - counts["sent"]
        if due <= 0:
            drain(sock, counts)
            time.sleep(0.0002)
            continue
        for _ in range(min(due, 256)):
            if mode == "random":
                packet = pool[counts["sent"] & 4095]
            elif mode == "replay":
                packet = captured
            else:
                if now - stamp_at > 0.05:
                    stamp_at = now
                    forged[at + TIME_AT : at + TIME_AT + 8] = struct.pack("!Q", int(time.time() * 1000))
                nonce += 1
                forged[at + NONCE_AT : at + NONCE_AT + 8] = struct.pack("!Q", nonce & (2**64 - 1))
                packet = forged
            try:
                sock.sendto(packet, target)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            counts["sent"] += 1
            counts["bytes_sent"] += len(packet)
        drain(sock, counts)
    # Late answers.
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        drain(sock, counts)
        time.sleep(0.01)
    report(counts, seconds)


def trickle(host, port, count, interval, path, wait, bind_ip=None):
    captured = load(path)
    sock = socket_for(bind_ip)
    counts = {"sent": 0, "bytes_sent": 0, "received": 0, "bytes_received": 0}
    for _ in range(count):
        sock.sendto(captured, (host, port))
        counts["sent"] += 1
        counts["bytes_sent"] += len(captured)
        end = time.monotonic() + interval
        while time.monotonic() < end:
            drain(sock, counts)
            time.sleep(0.005)
    end = time.monotonic() + wait
    while time.monotonic() < end:
        drain(sock, counts)
        time.sleep(0.01)
    report(counts, count * interval + wait)


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "capture":
        capture(args[0], int(args[1]), float(args[2]), args[3])
    elif command == "flood":
        flood(args[0], args[1], int(args[2]), float(args[3]), float(args[4]), args[5], *args[6:7])
    elif command == "trickle":
        trickle(args[0], int(args[1]), int(args[2]), float(args[3]), args[4], float(args[5]), *args[6:7])
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
