"""oaiofs performance benchmark: what users do on the drive, beside this machine's limit.

``python -m bench`` (or ``scripts/bench``) starts a server on 127.0.0.1 with a fresh
data folder, fills it through the API, mounts the drive and measures each workload
next to a baseline taken in the same run (see :mod:`bench.workloads`). It prints a
markdown table and writes JSON to ``bench/results/<timestamp>.json``.
"""
