"""Measures a checkpoint's payload raw, zstd-compressed as is, and zstd-compressed after byte
shuffling (what swift-cnn-train writes), using the zstd command-line tool at level 3.
Usage: python3 scripts/checkpoint-sizes.py CHECKPOINT"""
import json, struct, subprocess, sys, time

path = sys.argv[1]
data = open(path, "rb").read()
manifest_length = struct.unpack_from("<I", data, 12)[0]
manifest = json.loads(data[20:20 + manifest_length])
frame = data[20 + manifest_length:]
payload = subprocess.run(["zstd", "-d", "-c"], input=frame, capture_output=True, check=True).stdout
n = len(payload) // 4
# swift-cnn-train stores the payload byte-shuffled; rebuild the plain float order to compress it as is.
plain = bytearray(len(payload))
for k in range(4):
    plain[k::4] = payload[k * n:(k + 1) * n]

def zstd(b):
    start = time.perf_counter()
    out = subprocess.run(["zstd", "-3", "-c"], input=bytes(b), capture_output=True, check=True).stdout
    return len(out), time.perf_counter() - start

raw = len(payload)
plain_size, plain_time = zstd(plain)
shuffled_size, shuffled_time = zstd(payload)
print(f"payload {n} floats: raw {raw} bytes; zstd -3 {plain_size} bytes ({plain_size / raw:.1%}, {plain_time * 1000:.0f} ms via the CLI); "
      f"shuffled + zstd -3 {shuffled_size} bytes ({shuffled_size / raw:.1%}, {shuffled_time * 1000:.0f} ms); file {len(data)} bytes")
