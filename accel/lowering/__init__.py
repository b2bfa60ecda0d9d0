"""What matches are replaced with: one pass per file, each turning pattern matches into ``accel::*`` ops in the
Dynamo graph (before AOTAutograd, so Inductor inlines their Triton kernels), plus the Inductor hookup."""
