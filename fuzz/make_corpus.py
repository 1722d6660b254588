#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: fuzz/corpus/<target>/.

    python3 fuzz/make_corpus.py        (from the repository root or anywhere)

The seeds are small hand-made inputs, one per feature of the input format
(see the comment at the top of each target), so that a fuzzer starts from
inputs that already reach every mode.  Deterministic: running it again
rewrites the same files.  Inputs that once made a target fail (regressions)
are kept in the same directories under names starting with "regress-"; this
script leaves those alone.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


# ---- fuzz_attach: [mode][ctl][seed] then patches or raw bytes ----
# mode & 7: 0..5 patches, 6 header overlay, 7 raw file.
# ctl & 3: open options (0 template, 1 attach-only, 2 zero, 3 mismatch);
# ctl & 0x20: flush; ctl >> 6: rounds of churn writes.
# A patch: [region][offset: 3 bytes LE][kind << 4 | (len - 1)][payload]
# region % 9: 0 file, 1 header, 2 slots, 3 stripes, 4 lock table, 5 heads,
# 6 segment table, 7 index, 8 items.  kind 0..9: raw bytes; 10/11: an
# interesting word (payload: its selector); 12/13: an 8-byte word; 14: copy
# from elsewhere (payload: 3-byte source); 15: flip a bit.
REGIONS = ["file", "hdr", "slots", "stripes", "coord", "heads", "segs", "index", "data"]


def patch(region, off, kind, length, payload):
    return [region] + list(off.to_bytes(3, "little")) + [(kind << 4) | (length - 1)] + list(payload)


def attach():
    write("attach", "plain", [0, 0x00, 0])
    write("attach", "plain-churn", [0, 0x40, 1])
    write("attach", "plain-churn3-flush", [0, 0xe0, 2])
    write("attach", "attach-only", [0, 0x01, 3])
    write("attach", "zero-options", [0, 0x02, 4])
    write("attach", "mismatch", [0, 0x03, 5])
    for r, name in enumerate(REGIONS):
        if r == 0:
            continue
        # an interesting word at a few places of the region, then a write load
        seeds = [patch(r, 0, 10, 8, [sel]) for sel in (2, 9, 17)]
        write("attach", "word-" + name, [0, 0x40, r] + sum(seeds, []))
        write("attach", "bytes-" + name, [1, 0x40, r] + patch(r, 8, 0, 8, b"\xff" * 8))
        write("attach", "flip-" + name, [2, 0x00, r] + patch(r, 24, 15, 3, []))
    # the segment table: every state word of segment 0..3 OPEN, wpos huge
    segs = []
    for i in range(4):
        segs += patch(6, 64 * i + 8, 10, 8, [20])      # state: OPEN, no owner
        segs += patch(6, 64 * i, 10, 8, [3])           # wpos: UINT64_MAX - 7
    write("attach", "segs-open-huge-wpos", [3, 0x40, 9] + segs)
    # heads naming segments out of range
    write("attach", "heads-out-of-range",
          [4, 0x40, 10] + patch(5, 0, 10, 8, [12]) + patch(5, 64, 10, 8, [2]))
    # a stripe lock word naming a thread that does not exist
    write("attach", "stripe-lock-orphan",
          [5, 0x40, 11] + sum((patch(3, 64 * i, 0, 4, [0, 0, 0, 0x3f]) for i in range(0, 1024, 7)), []))
    # header overlay: the right magic, then garbage
    magic = struct.pack("<Q", 0x31454843414D4853)
    write("attach", "header-magic", [6, 0x00, 0] + list(magic))
    write("attach", "header-magic-version", [6, 0x00, 0] + list(magic) + [2, 0, 0, 0, 0, 0x10, 0, 0])
    # raw files
    write("attach", "raw-empty", [7, 0x00, 0])
    write("attach", "raw-magic", [7, 0x00, 0] + list(magic) + [0] * 64)


# ---- fuzz_api: [cache config] then operations ----
# op % 11: 0,1 read; 2 write; 3 cas; 4 delete; 5 counter; 6 touch/append;
# 7 batches; 8 locks; 9 fills; 10: next byte odd = open/destroy, even =
# whole-cache calls.  Keys: selector % 12 (6..8: short shared keys "k0".."k5",
# 0 NULL, 1 empty, 2 max, 3 max+1, 4 far past, 5 65537, 9..11 from input).
# Values: selector % 12 (0 NULL, 1 NULL with a length, 2 max, 3 max+1, 4 far
# past, 5 empty, 6/7 counter strings, 8..11 from input).
def api():
    K0, K1 = 0x06, 0x16            # keys "k0", "k1"
    V_IN = 0x08                    # a value from the input: [len][bytes]

    def val(b):
        return [V_IN, len(b)] + list(b)

    set_k0 = [2, 0, 0, K0] + val(b"hello") + [1, 0, 0, 0, 0]
    get_k0 = [0, 0, 0, K0, 64]
    write("api", "set-get", [0] + set_k0 + get_k0 + [1, 0, 2, K0, 64])
    write("api", "add-replace", [0] + set_k0 + [2, 0, 1, K0] + val(b"x") + [0, 0, 0, 0, 0] +
          [2, 0, 2, K1] + val(b"y") + [0, 0, 0, 0, 0])
    write("api", "limits", [0, 2, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0,  # max key, max value
                            2, 0, 0, 0x03, 0x03, 0, 0, 0, 0, 0,     # one past each
                            2, 0, 0, 0x04, 0x14, 0, 0, 0, 0, 0,     # far past
                            0, 0, 0, 0x05, 10])
    write("api", "tiny-cache", [1] + set_k0 + get_k0)
    write("api", "big-key-cache", [2, 2, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0])
    write("api", "one-slot", [3, 10, 0, 7, 2, 7, 0, K0, 0x05, 0, 0, 0, 0, 0])
    write("api", "counters", [0, 5, 0x02, K0, 1, 5, 0,       # incr create
                              5, 0x00, K0, 1, 0,              # incr
                              5, 0x01, K0, 2, 0,              # decr
                              5, 0x06, K1, 4, 1, 0,           # incr create binary
                              2, 0, 0, K1, 0x06, 0, 0, 0, 0, 0,  # set a counter string
                              5, 0x40, K1, 4, 0])
    write("api", "cas", [0] + set_k0 + [0, 0, 2, K0, 64] + [3, 0x05, K0] + val(b"new") + [0] +
          [3, 0x00, K0] + val(b"v") + [0, 16])
    write("api", "delete", [0] + set_k0 + [4, 0, K0, 4, 1, K0, 4, 2, K0] + val(b"hello"))
    write("api", "append", [0] + set_k0 + [6, 0, K0] + val(b"++") + [6, 2, K0] + val(b"--") +
          [6, 0, K0, 0x04])
    write("api", "batches", [0, 7, 0x0c, K0, 8, 0, K1, 8, 0, 7, 0x0d, K0] + val(b"a") + [0, K1] +
          val(b"b") + [0, 7, 0x0e, K0, K1])
    write("api", "locks", [0, 8, 0, K0, 4,     # acquire, lease 1 h
                           8, 0, K0, 0,        # again: busy
                           8, 3, K0, 3,        # extend
                           8, 4, K0,           # force release
                           8, 1, K0, 0,        # acquire (wait 1 ms)
                           8, 2, K0])          # release
    write("api", "fills", [0, 9, 0, K0, 0, 0,              # begin: leader
                           9, 0, K0, 0, 0,                 # again: times out
                           9, 0x0a, K0, 0, V_IN, 3, 1, 2, 3, 0, 0, 0, 0, 0,  # finish
                           9, 0x20, K1, 0, 0,              # begin K1
                           9, 0x22, K1, 0, 0, 5, 7, 0, 0, 0,  # abort with a cached error
                           9, 3, K0, 0, 0, 4])             # get_or_fill
    write("api", "names", [0, 10, 1, 0, 0, 0, 0, 0,   # NULL name
                           10, 1, 2, 0, 0, 0, 0,      # "/"
                           10, 1, 4, 0, 0, 0, 0,      # ".."
                           10, 1, 8, 0x81, 0, 0, 0,   # 200 bytes
                           10, 1, 9, 0, 0, 0, 0,      # 201 bytes
                           10, 1, 10, 0x81, 0, 0, 0,  # embedded NUL
                           10, 1, 11, 0, 0, 0, 0,     # the open cache
                           10, 1, 12, 3, ord("a"), ord("/"), ord("b"), 0x81, 0, 0, 3])
    write("api", "options", [0, 10, 1, 13, 0, 0x06, 0x21, 0x07, 0,
                             10, 1, 13, 0, 0x45, 0x02, 0x10, 0,
                             10, 1, 13, 0, 0x00, 0x00, 0x00, 8])
    write("api", "whole", [0] + set_k0 + [10, 0, 0, 10, 0, 2, 10, 0, 3, 10, 0, 4, 0, 2,
                                          10, 0, 5, 0, 0, 0, 0, 10, 0, 1, 10, 0, 6, 10, 0, 7])


if __name__ == "__main__":
    attach()
    api()
