#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A subscriber that stalls, as a paused notebook does: it connects, takes
its first message and reads nothing more until it is ended (or SECONDS).
A small receive buffer and queue keep its own share of the buffering small,
so the daemon-side queue (streams.sndhwm) fills within seconds.

  stalled_subscriber.py ENDPOINT [SECONDS]
"""
import sys
import time

import zmq

s = zmq.Context().socket(zmq.SUB)
s.setsockopt(zmq.RCVHWM, 10)
s.setsockopt(zmq.RCVBUF, 4096)
s.setsockopt(zmq.SUBSCRIBE, b"")
s.connect(sys.argv[1])
s.recv_multipart()
print("stalled: got one message, reading no more", flush=True)
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 3600)
