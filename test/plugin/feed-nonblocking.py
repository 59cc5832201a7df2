#!/usr/bin/python3
# feed-nonblocking.py PAUSE_MS CHUNKS COMMAND [ARG...]
# Runs COMMAND with its stdin on a pipe whose read end is non-blocking
# (O_NONBLOCK, as some callers hand it over), and writes this script's own
# stdin to it in CHUNKS pieces (cut anywhere, mid-line too). Before each piece
# it waits until COMMAND's main thread sleeps in epoll_wait (/proc/PID/wchan:
# a Node process idle in its event loop, so it has found the pipe empty and
# waits), then PAUSE_MS more. A command that reads the pipe synchronously at
# start thus always finds it empty. CHUNKS 0: nothing is written; the pipe is
# held open and empty until COMMAND exits. Exits with COMMAND's exit code.
# Python, because Node's spawn hands a child blocking stdio.
import os
import subprocess
import sys
import time

pause = int(sys.argv[1]) / 1000
chunks = int(sys.argv[2])
data = sys.stdin.buffer.read()
r, w = os.pipe()
os.set_blocking(r, False)
child = subprocess.Popen(sys.argv[3:], stdin=r)
os.close(r)


def idle_or_gone():
    """Waits until the command waits in epoll_wait (True) or has exited (False)."""
    deadline = time.monotonic() + 60
    while child.poll() is None:
        try:
            with open(f'/proc/{child.pid}/wchan') as f:
                if f.read().strip() == 'do_epoll_wait':
                    return True
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f'feed-nonblocking: {sys.argv[3]} never waited in epoll_wait within 60 s')
        time.sleep(0.002)
    return False


if chunks == 0:
    code = child.wait()
    os.close(w)
    sys.exit(code)
step = max(1, -(-len(data) // chunks))
try:
    for i in range(0, len(data), step):
        if not idle_or_gone():
            break
        time.sleep(pause)
        os.write(w, data[i:i + step])
except BrokenPipeError:
    pass  # COMMAND exited without reading it all: its exit code says why
os.close(w)
sys.exit(child.wait())
