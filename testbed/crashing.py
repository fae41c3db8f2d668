"""`python -m testbed.crashing N <nut-reconcile args>`: the agent, but SIGKILLed right
before step N of a pass, as a power cut or an OOM kill would. For the fault tests only:
the product has no such switch (reconcile/act/apply.py's before_step is set only here).
"""

from __future__ import annotations

import os
import signal
import sys

from reconcile import logfmt
from reconcile.act import apply
from reconcile.cli import main
from reconcile.model import Step, describe


def crash_at(n: int) -> None:
    def before_step(index: int, step: Step) -> None:
        if index == n:
            logfmt.warning("crash.hook", before_step=index, step=describe(step))
            os.kill(os.getpid(), signal.SIGKILL)

    apply.before_step = before_step


if __name__ == "__main__":
    if len(sys.argv) < 3 or not sys.argv[1].isdigit() or int(sys.argv[1]) < 1:
        sys.exit("usage: python -m testbed.crashing N COMMAND [ARGS...]  (N: the step to die before, from 1)")
    crash_at(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
