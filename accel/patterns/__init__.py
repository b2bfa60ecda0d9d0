"""What accel looks for in a Dynamo graph. Pure functions over FX nodes: they read the graph and return a
match object (or ``None``, or a ``NoMatch`` carrying the reason a near-miss was rejected); the passes in
``accel.lowering`` turn matches into ``accel::*`` ops."""
from accel.patterns.base import NoMatch

__all__ = ["NoMatch"]
