"""rehash.py IN OUT TREE: IN's qlinear keys with their source hash replaced by TREE's accel's (a subprocess)."""
import json, subprocess, sys
src, dst, tree = sys.argv[1:4]
h = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                    "from accel.runtime.kernels import qlinear; print(qlinear._sources())", tree],
                   capture_output=True, text=True, check=True).stdout.strip()
d = json.load(open(src))
n = 0
for ver in d:
    new = {}
    for k, v in d[ver].items():
        if k.startswith("qlinear."):
            p = k.split("|"); p[1] = h; k = "|".join(p); n += 1
        new[k] = v
    d[ver] = new
json.dump(d, open(dst, "w"))
print(dst, h, n, "keys")
