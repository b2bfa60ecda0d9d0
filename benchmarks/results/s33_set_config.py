"""setcfg.py IN OUT DIMS JSON: IN with the chosen config of every qlinear int4 key whose dims contain DIMS updated by JSON."""
import json, sys
src, dst, dims, upd = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
d = json.load(open(src)); n = 0
for k, v in d["v1"].items():
    if k.startswith("qlinear.int4") and dims in "x" + k.split("|")[2] + "x":
        v["config"] = {**v["config"], **upd}; n += 1
json.dump(d, open(dst, "w")); print(dst, n, upd)
