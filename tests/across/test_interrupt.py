"""Ctrl-C or SIGTERM mid-attribution leaves no output folder, no temporary files, and exits 130/143."""

import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_leaves_nothing(sig, code, tiny_model_dir, tiny_data, tmp_path):
    out = tmp_path / "slim"
    command = [
        sys.executable,
        "-m",
        "attr_compress.cli",
        str(tiny_model_dir),
        "--keep",
        "0.5",
        "--data",
        str(tiny_data),
        "--calib",
        str(tiny_data),
        "--out",
        str(out),
        "--steps",
        "40000",
        "--no-cache",  # scoring must really run (and last) when the signal comes
    ]
    # a CI job started in the background inherits an ignored SIGINT (POSIX shells do that to `&` jobs), and
    # Python then installs no Ctrl-C handler: restore the default in the child, as in a terminal
    process = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = ""
    deadline = time.monotonic() + 120
    while "score heads" not in seen and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen += line
    assert "score heads" in seen, seen
    assert list(tmp_path.glob(".slim.partial-*"))  # the run was writing when interrupted
    time.sleep(0.5)
    process.send_signal(sig)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == code
    assert "no output was written" in rest
    assert "Traceback" not in rest
    assert sorted(path.name for path in tmp_path.iterdir()) == []
