"""Peak RSS of one command, measured apart from the test process itself.

``RUSAGE_CHILDREN`` of the test process is a running maximum over every child the session has
run, and Linux starts a child's ``ru_maxrss`` from its parent's size at fork: under pytest, with
TensorFlow loaded, either alone reports gigabytes for a small command. A small wrapper process
starts the command and reports its own RUSAGE_CHILDREN: that covers the command (and whatever it
waited for) and nothing else.
"""

import subprocess
import sys

_WRAPPER = ("import resource, subprocess, sys\n"
            "code = subprocess.call(sys.argv[1:])\n"
            "sys.stderr.write('\\npeak_rss_kib=%d\\n' % "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "sys.exit(code)\n")


def run(args, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    """(the finished command, with the wrapper's line removed from stderr; its peak RSS in MB)."""
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *args], capture_output=True,
                          text=True, **kwargs)
    err, _, line = proc.stderr.rstrip("\n").rpartition("\n")
    if not line.startswith("peak_rss_kib="):
        raise RuntimeError(f"no peak reported by the wrapper: {proc.stderr[-2000:]}")
    proc = subprocess.CompletedProcess(args, proc.returncode, proc.stdout, err)
    return proc, int(line.split("=")[1]) / 1024
