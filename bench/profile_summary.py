"""Summarise a py-spy raw profile (collapsed stacks): where the server's time goes.

    python bench/profile_summary.py bench/out/profile-fanout-1000.txt [top]

Self time is the sampled frame itself (the innermost Python frame: C code it calls, such
as a socket write, is counted there); inclusive time counts every frame on the stack.
"""

from __future__ import annotations

import sys
from collections import Counter


def main() -> int:
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    with open(sys.argv[1]) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            own[frames[-1]] += n
            for frame in set(frames):
                incl[frame] += n
    print(f"{total} samples")
    print("\nself time")
    for frame, n in own.most_common(top):
        print(f"{100 * n / total:5.1f}%  {frame}")
    print("\ninclusive time (logtail frames)")
    shown = 0
    for frame, n in incl.most_common():
        if "logtail/" in frame and shown < top:
            print(f"{100 * n / total:5.1f}%  {frame}")
            shown += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
