#!/bin/bash
# mead-experiment with any amount of data runs to the end:
#  - a training file of 60,000 images (IDX, gzip), as MNIST's own is, made
#    here from the bundled digits shifted so no two are alike;
#  - a readout whose result is far longer than a pipe holds (4 MiB): it
#    used to block writing it while mead-experiment waited for it to end.
#   test-experiment-large.sh MEAD_EXPERIMENT SOURCE_ROOT
set -u
exp=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
/usr/bin/python3 -c 'import numpy' 2>/dev/null || { echo "SKIP: python3-numpy missing"; exit 77; }

/usr/bin/python3 - "$src/data/mnist" "$tmp" <<'PY' || fail "could not write the large IDX files"
import gzip, struct, sys
import numpy as np
src, out = sys.argv[1], sys.argv[2]
def load(name):
    with gzip.open(f"{src}/{name}", "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        dims = struct.unpack(">" + "I" * (magic & 0xff), f.read(4 * (magic & 0xff)))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(dims)
imgs, labels = load("mnist8k-images-idx3-ubyte.gz"), load("mnist8k-labels-idx1-ubyte.gz")
n = 60000
reps = -(-n // len(imgs))
big = np.concatenate([np.roll(np.roll(imgs, k % 3 - 1, axis=1), k // 3 - 1, axis=2) for k in range(reps)])[:n]
lab = np.concatenate([labels] * reps)[:n]
with gzip.open(f"{out}/train-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
    f.write(struct.pack(">IIII", 0x803, n, 28, 28) + big.tobytes())
with gzip.open(f"{out}/train-labels-idx1-ubyte.gz", "wb", compresslevel=1) as f:
    f.write(struct.pack(">II", 0x801, n) + lab.tobytes())
PY

# the whole file is read, split and planned; a small part of it is shown
start=$(date +%s.%N)
out=$("$exp" mnist -c "$src/config/twin-mnist-bio.yaml" \
	-o "protocol.mnist.train_images=$tmp/train-images-idx3-ubyte.gz" \
	-o "protocol.mnist.train_labels=$tmp/train-labels-idx1-ubyte.gz" \
	-o protocol.mnist.train_size=60 -o protocol.mnist.validation_size=30 -o protocol.mnist.test_size=30 \
	-o protocol.mnist.eval_screen=10 --json --timeout 120) || fail "60,000-image run: $out"
end=$(date +%s.%N)
/usr/bin/python3 - "$out" <<'PY' || exit 1
import json, sys
j = json.loads(sys.argv[1])
assert j["seeds_failed"] == 0 and j["n"] == 30, j
assert 0.0 <= j["readout_accuracy"] <= 1.0, j
PY
echo "60,000-image training file: ran to the end in $(echo "$end - $start" | bc) s"

# a readout that says a great deal before its result
cat > "$tmp/chatty-readout" <<EOF2
#!/bin/sh
"$(dirname "$exp")/../readout/mead-readout" "\$@" > "$tmp/result" || exit \$?
head -c 4194304 /dev/zero | tr '\\0' 'x'
echo
cat "$tmp/result"
EOF2
chmod +x "$tmp/chatty-readout"
out=$(MEAD_READOUT_BIN="$tmp/chatty-readout" timeout 180 "$exp" mnist -c "$src/config/twin-mnist-bio.yaml" \
	-o protocol.mnist.train_size=40 -o protocol.mnist.validation_size=20 -o protocol.mnist.test_size=20 \
	-o protocol.mnist.eval_screen=10 --json --timeout 120); rc=$?
[ $rc -eq 0 ] || fail "a readout with 4 MiB of output: exit $rc (124: it never ended)"
echo "$out" | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["n"] == 20, j' ||
	fail "the result after 4 MiB of output was not read: $out"
echo "ok: a 60,000-image file and a 4 MiB readout output both run to the end"
