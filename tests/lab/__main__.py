"""`python3 -m tests.lab sweep`: remove labs whose owner process died
(e.g. a test run killed with SIGKILL).  Labs of live runs are left alone."""

import sys

from . import requirements_missing, sweep


def main(argv) -> int:
    if argv[1:] != ["sweep"]:
        print("usage: python3 -m tests.lab sweep", file=sys.stderr)
        return 2
    reason = requirements_missing(need_etcd=False)
    if reason:
        print(f"cannot sweep: {reason}", file=sys.stderr)
        return 2
    removed = sweep(verbose=True)
    print(f"removed {len(removed)} namespace(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
