"""`comfypak check`, run by the image's own Python inside comfypak's sandbox (the layers stacked
over the base, read-only, no network) as `VENV/bin/python check.py [--imports-only] RESULT.json`.

For every distribution installed in the venv's site-packages:
  - import every top-level module (from top_level.txt, else derived from RECORD), each in a
    worker process that keeps going after a module crashes the interpreter;
  - run every console script with --help (then --version, unless --help timed out), with
    the per-module time limit.
Writes what happened to RESULT.json; comfypak applies the stack's allow-list and reports.
While it works it keeps RESULT.json's folder's progress.json current (phase, how many done of
how many, what runs now, what failed so far), rewritten whole each time: comfypak shows it and,
when the check is stopped before it ends (its time limit), says how far it got.
`--imports-only` skips the console scripts (each one is an interpreter start: slow under qemu
when another check already ran them). COMFYPAK_CHECK_TIMEOUT_SCALE (a number >= 1, set by
comfypak when the interpreter runs under qemu-user) multiplies the per-module and per-script
time limits.
"""

import concurrent.futures
import importlib
import importlib.metadata as metadata
import json
import os
import subprocess
import sys
import sysconfig
import time



def timeout_scale():
    try:
        return max(1.0, float(os.environ.get("COMFYPAK_CHECK_TIMEOUT_SCALE", "1")))
    except ValueError:
        return 1.0


MODULE_TIMEOUT_S = 300 * timeout_scale()
# A console script starts by importing its package, which may take as long as that import
# does on its own (torch and what builds on it: over 90 s on a loaded machine), so it gets the
# module limit. One that does not answer in it is not asked a second time.
SCRIPT_TIMEOUT_S = MODULE_TIMEOUT_S
SCRIPT_WORKERS = 2


class Progress:
    """progress.json beside the result: {"phase", "done", "total", "current", "failed"}.
    Thread-safe (the console scripts run two at a time)."""

    def __init__(self, path):
        import threading

        self.path = path
        self.lock = threading.Lock()
        self.state = {"phase": "collecting distributions", "done": 0, "total": 0, "current": [], "failed": []}
        self.write()

    def write(self):
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(self.state, f)
            os.replace(tmp, self.path)
        except OSError:
            pass  # progress is for display; the result is what counts

    def phase(self, name, total):
        with self.lock:
            self.state.update(phase=name, done=0, total=total, current=[])
            self.write()

    def started(self, name):
        with self.lock:
            self.state["current"].append(name)
            self.write()

    def finished(self, name, error=None):
        with self.lock:
            if name in self.state["current"]:
                self.state["current"].remove(name)
            self.state["done"] += 1
            if error is not None:
                self.state["failed"] = [f for f in self.state["failed"] if f["name"] != name]
                self.state["failed"].append({"name": name, "error": error[:200]})
            elif self.state["phase"] == "retrying failed imports alone":
                self.state["failed"] = [f for f in self.state["failed"] if f["name"] != name]
            self.write()


class NoProgress:
    def phase(self, name, total):
        pass

    def started(self, name):
        pass

    def finished(self, name, error=None):
        pass


def site_packages():
    return sysconfig.get_paths()["purelib"]


def record_top_levels(dist):
    """Importable top-level names of a distribution, derived from its RECORD."""
    names = set()
    for f in dist.files or []:
        parts = f.parts
        if not parts or parts[0] in ("..", "") or parts[0].endswith((".dist-info", ".data")):
            continue
        first = parts[0]
        if first == "__pycache__" or first.endswith(".libs"):
            continue
        if len(parts) == 1:
            if first.endswith(".py"):
                names.add(first[: -len(".py")])
            elif first.endswith(".so"):
                names.add(first.split(".", 1)[0])
        elif f.name.endswith((".py", ".so")):
            names.add(first)
    return {n for n in names if n.isidentifier()}


def on_disk(site, name):
    """True when `name` is a module or package under site-packages."""
    if os.path.isdir(os.path.join(site, name)):
        return True
    for entry in os.listdir(site):
        if entry == name + ".py" or (entry.startswith(name + ".") and entry.endswith(".so")):
            return True
    return False


def in_record(dist, name):
    for f in dist.files or []:
        parts = f.parts
        if parts and (parts[0] == name or parts[0] == name + ".py" or (
            parts[0].startswith(name + ".") and parts[0].endswith(".so")
        )):
            return True
    return False


def collect(site):
    """[(dist name, version, [modules], [names listed but not shipped], [console scripts])]"""
    dists = []
    for dist in metadata.distributions(path=[site]):
        name = dist.metadata["Name"]
        listed = dist.read_text("top_level.txt")
        unshipped = []
        if listed is not None:
            modules = set()
            for line in listed.split():
                line = line.strip().replace("/", ".")
                top = line.split(".", 1)[0]
                if not top.isidentifier():
                    continue
                if on_disk(site, top):
                    modules.add(top)
                elif in_record(dist, top):
                    # RECORD names it but it is not on disk: files were lost.
                    modules.add(top)
                else:
                    unshipped.append(top)
            source = "top_level.txt"
        else:
            modules = record_top_levels(dist)
            source = "RECORD"
        scripts = sorted({ep.name for ep in dist.entry_points if ep.group == "console_scripts"})
        dists.append(
            {
                "name": name,
                "version": dist.version,
                "modules": sorted(modules),
                "source": source,
                "unshipped": sorted(set(unshipped)),
                "scripts": scripts,
            }
        )
    dists.sort(key=lambda d: d["name"].lower())
    return dists


def worker(modules):
    """Imports each module in turn, one JSON line per result, flushed."""
    import traceback
    import warnings

    warnings.simplefilter("ignore")
    # The protocol gets its own copy of stdout; whatever a module prints (from Python or C)
    # goes to stderr instead, so it cannot garble a result line.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message):
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    for module in modules:
        send({"start": module})
        started = time.monotonic()
        try:
            importlib.import_module(module)
            result = {"module": module, "ok": True}
        except BaseException as e:  # SystemExit and KeyboardInterrupt too: a module did it
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            result = {"module": module, "ok": False, "error": last[:400]}
        result["seconds"] = round(time.monotonic() - started, 2)
        send(result)


def import_all(modules, progress):
    """Runs `worker` in child processes; a crash or a hang fails that module, and the next
    child goes on with the rest."""
    results = {}
    pending = list(modules)
    while pending:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        proc.stdin.write("\n".join(pending))
        proc.stdin.close()
        current = None
        deadline = [time.monotonic() + MODULE_TIMEOUT_S]
        import threading

        def watchdog():
            while proc.poll() is None:
                if time.monotonic() > deadline[0]:
                    proc.kill()
                    return
                time.sleep(1)

        threading.Thread(target=watchdog, daemon=True).start()
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # a module printed to stdout at import
            if "start" in msg:
                current = msg["start"]
                deadline[0] = time.monotonic() + MODULE_TIMEOUT_S
                progress.started(current)
            elif "module" in msg:
                results[msg["module"]] = msg
                progress.finished(msg["module"], None if msg["ok"] else msg.get("error", "failed"))
                current = None
        code = proc.wait()
        done = set(results)
        if current is not None and current not in done:
            how = "timed out" if time.monotonic() > deadline[0] else f"crashed the interpreter (exit {code})"
            results[current] = {"module": current, "ok": False, "error": how}
            progress.finished(current, how)
        pending = [m for m in pending if m not in results]
        if pending and current is None:
            # The worker ended without starting the next module: fail the rest rather than loop.
            for m in pending:
                results[m] = {"module": m, "ok": False, "error": f"worker exited ({code}) before importing it"}
            pending = []
    return results


def run_script(venv, name, progress=NoProgress()):
    progress.started(name)
    result = try_script(venv, name)
    if result["ok"]:
        error = None
    else:
        error = result.get("broken") or " | ".join(result.get("tried", []))
    progress.finished(name, error)
    return result


def try_script(venv, name):
    path = os.path.join(venv, "bin", name)
    if not os.path.exists(path):
        return {"script": name, "ok": False, "broken": f"{path} is missing"}
    if not os.access(path, os.X_OK):
        return {"script": name, "ok": False, "broken": f"{path} is not executable"}
    tried = []
    for flag in ("--help", "--version"):
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [path, flag],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=SCRIPT_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            tried.append(f"{flag}: timed out after {SCRIPT_TIMEOUT_S:.0f}s")
            break
        except OSError as e:
            return {"script": name, "ok": False, "broken": f"cannot execute {path}: {e}"}
        if proc.returncode == 0:
            return {"script": name, "ok": True, "flag": flag, "seconds": round(time.monotonic() - started, 1)}
        tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [""])[-1]
        tried.append(f"{flag}: exit {proc.returncode}: {tail[:200]}")
    return {"script": name, "ok": False, "tried": tried}


def main():
    args = sys.argv[1:]
    imports_only = "--imports-only" in args
    args = [a for a in args if a != "--imports-only"]
    if len(args) != 1:
        sys.exit("usage: check.py [--imports-only] RESULT.json")
    result_path = args[0]
    site = site_packages()
    venv = sys.prefix
    if sys.prefix == sys.base_prefix:
        sys.exit(f"{sys.executable} is not the venv's python (sys.prefix == sys.base_prefix == {sys.prefix})")
    progress = Progress(os.path.join(os.path.dirname(os.path.abspath(result_path)), "progress.json"))
    dists = collect(site)
    modules = sorted({m for d in dists for m in d["modules"]})
    t = time.monotonic()
    progress.phase("importing modules", len(modules))
    results = import_all(modules, progress)
    # A failure in the shared worker may come from what an earlier module did to the process:
    # retry each failure alone, in a fresh interpreter, and keep that result.
    failed = [m for m in modules if not results[m]["ok"]]
    if failed:
        progress.phase("retrying failed imports alone", len(failed))
    for m in failed:
        alone = import_all([m], progress)[m]
        alone["retried"] = True
        results[m] = alone
    import_seconds = time.monotonic() - t
    t = time.monotonic()
    scripts = [] if imports_only else sorted({s for d in dists for s in d["scripts"]})
    if scripts:
        progress.phase("running console scripts", len(scripts))
    with concurrent.futures.ThreadPoolExecutor(SCRIPT_WORKERS) as pool:
        script_results = list(pool.map(lambda s: run_script(venv, s, progress), scripts))
    script_seconds = time.monotonic() - t
    out = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "venv": venv,
        "site_packages": site,
        "distributions": dists,
        "imports": [results[m] for m in modules],
        "scripts": script_results,
        "import_seconds": round(import_seconds, 2),
        "script_seconds": round(script_seconds, 2),
        "imports_only": imports_only,
        "timeout_scale": timeout_scale(),
    }
    with open(result_path + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(result_path + ".tmp", result_path)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker([m for m in sys.stdin.read().split("\n") if m])
    else:
        main()
