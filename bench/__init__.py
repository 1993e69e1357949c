"""lossd's benchmark: lossd against the raw-bytes gRPC echo (the ceiling) and torch in-process (the floor).

Run it with ``make bench`` or ``lossd bench``. It starts its own servers on loopback, in their own
processes, measures every scenario side by side in one run, and reports ratios, not absolute
numbers, as the targets: the machines it runs on are shared and noisy.
"""
