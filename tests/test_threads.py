import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import atexit, sys, threading
    from streamprep.flow.threads import exit_if_threads_linger

    atexit.register(lambda: print("teardown ran", flush=True))
    release = threading.Event()
    threading.Thread(target=release.wait, name="stuck decode", daemon=True).start()
    if sys.argv[1] == "ends":
        release.set()
    print("summary", flush=True)
    exit_if_threads_linger(7, grace=0.2)
    sys.exit(5)
    """
)


@pytest.mark.parametrize("thread", ["ends", "stays"])
def test_run_leaves_without_interpreter_teardown_only_while_a_daemon_thread_is_still_busy(thread: str) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, thread], capture_output=True, text=True, timeout=60)
    assert proc.stderr == ""
    if thread == "ends":
        assert proc.returncode == 5, "no thread left: the interpreter exits as usual"
        assert proc.stdout.splitlines() == ["summary", "teardown ran"]
    else:
        assert proc.returncode == 7, "a thread is still busy: the process ends at once with the run's code"
        assert proc.stdout.splitlines() == ["summary"], "what was printed before is flushed, teardown skipped"
