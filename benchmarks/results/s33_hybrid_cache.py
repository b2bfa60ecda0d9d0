"""hybrid.py A B OUT GROUP: cache A (this tree's hash) with the qlinear int4 keys of GROUP taken from cache B (rehashed
to A's hash). GROUP: qkv, o, gateup, down, head, all."""
import json, sys
a, b, out, group = sys.argv[1:5]
dims = {"qkv": "x3072x2048x", "o": "x2048x2048x", "gateup": "x8192x2048x", "down": "x2048x8192x", "head": "x128256x2048x"}
A, B = json.load(open(a)), json.load(open(b))
h = next(k.split("|")[1] for k in A["v1"] if k.startswith("qlinear."))
bk = {}
for k, v in B["v1"].items():
    if k.startswith("qlinear.int4"):
        p = k.split("|"); p[1] = h; bk["|".join(p)] = v
n = 0
for k in list(A["v1"]):
    if k.startswith("qlinear.int4") and (group == "all" or dims[group] in "x" + k.split("|")[2] + "x"):
        p = k.split("|")
        m = next((kb for kb in bk if kb.split("|")[0] == p[0] and kb.split("|")[2] == p[2]), None)
        if m:
            A["v1"][k] = bk[m]; n += 1
json.dump(A, open(out, "w"))
print(out, group, n, "keys from", b)
