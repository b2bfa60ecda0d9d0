"""rehash_attn.py IN OUT: IN with each attention entry also under this tree's key for rope_attention_append
(name attention.append1, this tree's attention source hash); the other entries as they are."""
import json, sys
from accel.runtime.kernels import attention as ka
src, dst = sys.argv[1:3]
d = json.load(open(src))
n = 0
for ver in d:
    for k, v in list(d[ver].items()):
        if k.startswith("attention|"):
            p = k.split("|"); p[0] = "attention.append1"; p[1] = ka._SRC_HASH
            d[ver]["|".join(p)] = v; n += 1
json.dump(d, open(dst, "w"))
print(dst, ka._SRC_HASH, n, "keys")
