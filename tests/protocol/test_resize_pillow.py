#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""mead_resize_u8 against Pillow's Image.resize(BILINEAR) (what torchvision's
Resize does to a PIL digit) on real digits: every byte must be equal.
Exit 77 (skip) without Pillow."""
import gzip
import subprocess
import sys

try:
    from PIL import Image
except ImportError:
    print("Pillow not installed (apt-get install python3-pil): skipped")
    sys.exit(77)

dump, idx = sys.argv[1], sys.argv[2]
n = 2000
raw = gzip.open(idx).read()
count, rows, cols = (int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
n = min(n, count)
bilinear = getattr(Image, "Resampling", Image).BILINEAR
bad = 0
for w, h in [(6, 6), (10, 6), (5, 7), (14, 14), (28, 28), (56, 40), (3, 3)]:
    ours = subprocess.run([dump, idx, str(w), str(h), str(n)], check=True, capture_output=True).stdout
    ref = bytearray()
    for i in range(n):
        off = 16 + i * rows * cols
        im = Image.frombytes("L", (cols, rows), raw[off:off + rows * cols])
        ref += im.resize((w, h), bilinear).tobytes()
    diff = sum(1 for a, b in zip(ours, ref) if a != b)
    if len(ours) != len(ref) or diff:
        print(f"{w}x{h}: {diff} of {len(ref)} bytes differ (lengths {len(ours)} / {len(ref)})")
        bad = 1
    else:
        print(f"{w}x{h}: {n} digits byte-identical to Pillow {Image.__version__}")
sys.exit(bad)
