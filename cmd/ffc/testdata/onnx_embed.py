#!/usr/bin/env python3
"""Embed PNG images with an ONNX model written by `ffc export --format onnx`.

    python3 onnx_embed.py MODEL.onnx IMAGE.png...

Prints one JSON object a line, {"path": ..., "embedding": [...]}, as
`ffc embed --format jsonl` does, computed by onnxruntime (CPU) from the
model alone: the input layout and scaling below are the model's contract.

  - input "input": float32, N×1×32×32 (NCHW; irresnet) or N×1024 (mlp),
    pixels of the 8-bit grayscale image scaled (x/255 - 0.5)/0.5;
  - output "embedding": float32 N×dim, L2-normalised rows.

Needs numpy and onnxruntime (pip install numpy onnxruntime). PNGs are
decoded with the standard library (8-bit grayscale, not interlaced: the
images ffc's data sets and tests write), so no imaging package is needed.
cmd/ffc's TestExportONNXParity runs it to compare with `ffc embed`.
"""

import json
import struct
import sys
import zlib

import numpy as np
import onnxruntime as ort


def read_gray_png(path):
    """Returns the pixels of an 8-bit grayscale PNG as a uint8 H×W array."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if hdr is None:
        raise ValueError(f"{path}: no IHDR")
    w, h, depth, color, _, _, interlace = hdr
    if depth != 8 or color != 0 or interlace != 0:
        raise ValueError(f"{path}: bit depth {depth}, color type {color}, interlace {interlace}: "
                         "only 8-bit grayscale, non-interlaced PNGs are read")
    raw = zlib.decompress(b"".join(idat))
    out = np.zeros((h, w), dtype=np.uint8)
    prev = np.zeros(w, dtype=np.int32)
    for y in range(h):
        ftype = raw[y * (w + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=w, offset=y * (w + 1) + 1).astype(np.int32)
        cur = np.zeros(w, dtype=np.int32)
        for x in range(w):
            a = cur[x - 1] if x > 0 else 0
            b = prev[x]
            c = prev[x - 1] if x > 0 else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            else:
                raise ValueError(f"{path}: bad filter type {ftype}")
            cur[x] = (line[x] + pred) & 0xFF
        out[y] = cur
        prev = cur
    return out


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    model, paths = argv[1], argv[2:]
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    pix = np.stack([read_gray_png(p) for p in paths]).astype(np.float32)
    # The scaling of training: (x/255 - 0.5)/0.5, in [-1, 1].
    x = (pix / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    x = x.reshape([len(paths)] + [int(d) for d in inp.shape[1:]]).astype(np.float32)
    (emb,) = sess.run(["embedding"], {inp.name: x})
    for p, e in zip(paths, emb):
        print(json.dumps({"path": p, "embedding": [float(v) for v in e]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
