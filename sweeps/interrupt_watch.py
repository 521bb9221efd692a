"""Knowing that a sweep was interrupted: Tune answers Ctrl-C (SIGINT, or SIGUSR1) by saving its state and returning
from `Tuner.fit()` as if it had finished, so the sweep cannot tell from the return alone.

`InterruptWatch` is a Tune callback whose `setup` runs after Tune has installed its own signal handlers; it puts a
handler in front of each that notes the signal and then hands it to Tune's, so Tune behaves exactly as before.
SIGTERM (what `ray job stop`, Kubernetes and batch schedulers send) is handed to Tune's SIGINT handler: Tune has
none of its own for it, and without one the driver would die at once, leaving its parent run RUNNING.
"""
import signal
import threading

from ray.tune import Callback

WATCHED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGUSR1", "SIGTERM") if hasattr(signal, name))


class InterruptWatch(Callback):
    def __init__(self):
        self.interrupted = False

    def setup(self, **info):
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            return
        for signum in WATCHED:
            handled_as = signal.SIGINT if signum == signal.SIGTERM else signum
            signal.signal(signum, self._noting(signal.getsignal(handled_as)))

    def _noting(self, tunes_handler):
        def handler(signum, frame):
            self.interrupted = True
            if callable(tunes_handler):
                tunes_handler(signum, frame)
            elif signum in (signal.SIGINT, signal.SIGTERM) and tunes_handler == signal.SIG_DFL:
                raise KeyboardInterrupt

        return handler
