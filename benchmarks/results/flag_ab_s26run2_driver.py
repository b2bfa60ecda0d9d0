"""kernels.py with qlinear.<argv[1]> set from argv[2] (0/1), the rest of argv passed on."""
import sys
sys.path.insert(0, "benchmarks")
name, flag = sys.argv.pop(1), sys.argv.pop(1) == "1"
import kernels  # noqa: E402
from accel.runtime.kernels import qlinear as kq  # noqa: E402
assert hasattr(kq, name), name
setattr(kq, name, flag)
print(f"qlinear.{name} = {flag}", flush=True)
sys.argv = ["kernels.py"] + sys.argv[1:]
kernels.main()
