"""Driving the compile: options, the backend entry, the pass pipeline and manager, reports and dumps."""
