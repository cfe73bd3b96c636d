"""Process-tree statistics for the benchmark: RSS, CPU time, a peak sampler (psutil or /proc)."""
from __future__ import annotations

import os
import threading
import time

try:
    import psutil  # bench-only dependency; /proc fallback below
except ImportError:  # pragma: no cover
    psutil = None

# --------------------------------------------------------------------------
# process-tree accounting (psutil, or /proc when psutil is missing)
# --------------------------------------------------------------------------
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                st = f.read()
            ppid = int(st[st.rfind(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree_pids(pid: int) -> list[int]:
    if psutil is not None:
        try:
            p = psutil.Process(pid)
            return [pid] + [c.pid for c in p.children(recursive=True)]
        except psutil.Error:
            return []
    if not os.path.exists(f"/proc/{pid}"):
        return []
    kids = _proc_children_map()
    out, todo = [], [pid]
    while todo:
        x = todo.pop()
        out.append(x)
        todo.extend(kids.get(x, []))
    return out


def tree_stats(pid: int) -> dict:
    """rss (bytes), hwm (sum of VmHWM, bytes), cpu (s) and pids of pid's whole tree."""
    rss = hwm = 0
    cpu = 0.0
    pids = tree_pids(pid)
    for p in pids:
        if psutil is not None:
            try:
                pr = psutil.Process(p)
                rss += pr.memory_info().rss
                t = pr.cpu_times()
                cpu += t.user + t.system
            except psutil.Error:
                continue
        else:
            try:
                with open(f"/proc/{p}/statm") as f:
                    rss += int(f.read().split()[1]) * _PAGE
                with open(f"/proc/{p}/stat", "rb") as f:
                    st = f.read()
                fields = st[st.rfind(b")") + 2:].split()
                cpu += (int(fields[11]) + int(fields[12])) / _TCK
            except (OSError, ValueError, IndexError):
                continue
        try:
            with open(f"/proc/{p}/status") as f:
                for ln in f:
                    if ln.startswith("VmHWM:"):
                        hwm += int(ln.split()[1]) * 1024
                        break
        except OSError:
            pass
    return {"rss": rss, "hwm": hwm, "cpu": cpu, "pids": pids}


def host_cpu() -> dict | None:
    """Machine-wide busy and steal CPU seconds since boot (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    # irq/softirq left out: on loopback they are mostly our own traffic's
    return {"busy": (user + nice + system) / _TCK, "steal": steal / _TCK}


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


class PeakSampler:
    """One thread sampling the RSS of the process tree currently under load.

    Only the system being measured is sampled (idle ones don't grow), its pid
    list is refreshed every second (a full /proc scan), its RSS every 100 ms.
    """

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.target: "object | None" = None  # the SystemRun being measured
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self):
        pids: list[int] = []
        owner = None
        refreshed = 0.0
        while not self._stop.is_set():
            run = self.target
            if run is not None and run.pid:
                now = time.monotonic()
                if run is not owner or now - refreshed > 1.0:
                    pids, owner, refreshed = tree_pids(run.pid), run, now
                rss = 0
                for p in pids:
                    try:
                        with open(f"/proc/{p}/statm") as f:
                            rss += int(f.read().split()[1]) * _PAGE
                    except (OSError, ValueError, IndexError):
                        pass
                run.peak_rss = max(run.peak_rss, rss)
            self._stop.wait(self.interval)

    def start(self):
        self._t.start()
        return self

    def stop(self):
        self._stop.set()
        self._t.join(timeout=2)


