"""Helpers of bench/vs-dockerfile.sh (Python 3.11+ standard library, plus `packaging` for the
pak lines): scaled fixture specs, the Dockerfile's pinned requirement files, the lock pointed
at the wheelhouse, registry measurements and the result table. Run only by the script:

    vs-dockerfile.py pad SPEC.json OUT.json SCALE
    vs-dockerfile.py pin STACK_DIR LOCK OUT_DIR          (prints the pak files in image order)
    vs-dockerfile.py relock LOCK OUT MIRROR_DIR
    vs-dockerfile.py blobs REGISTRY_DATA_DIR             (prints the bytes the registry stores)
    vs-dockerfile.py layers MANIFEST.json PREVIOUS.json  (prints: new-layer-count new-bytes total)
    vs-dockerfile.py dists A.txt B.txt NAME_A NAME_B
    vs-dockerfile.py dedup WORK_DIR                      (prints the bytes it linked)
    vs-dockerfile.py table RESULTS.tsv
"""

import json
import os
import re
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def fail(message):
    print(f"vs-dockerfile.py: {message}", file=sys.stderr)
    sys.exit(1)


def pad(spec_path, out_path, scale):
    """Every wheel of the spec carries real_size / scale bytes of incompressible filler."""
    scale = int(scale)
    if scale < 1:
        fail(f"scale must be a positive integer, not {scale}")
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    for files in spec["projects"].values():
        for entry in files:
            size = entry.get("real_size") or 0
            if size // scale > 0:
                entry["pad_bytes"] = size // scale
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(spec, f)


def pin(stack_dir, lock_path, out_dir):
    """One requirement file per pak file of the stack's layers, in image order: each pak line
    with the lock's exact version (extras and markers kept); a line whose project is not in
    the lock (a marker that is false for the target) is left out."""
    with open(os.path.join(stack_dir, "stack.toml"), "rb") as f:
        stack = tomllib.load(f)
    with open(lock_path, "rb") as f:
        lock = tomllib.load(f)
    versions = {canonicalize_name(p["name"]): p["version"] for p in lock.get("packages", [])}
    os.makedirs(out_dir, exist_ok=True)
    for layer in stack["layer"]:
        for pak in layer["paks"]:
            pak_path = os.path.join(stack_dir, pak)
            lines = [f"# {pak} (layer {layer['name']}) pinned to the lock"]
            with open(pak_path, encoding="utf-8") as f:
                for number, raw in enumerate(f, 1):
                    text = raw.split(" #", 1)[0].strip()
                    if not text or text.startswith("#"):
                        continue
                    try:
                        req = Requirement(text)
                    except Exception as e:  # packaging's InvalidRequirement
                        fail(f"{pak_path}:{number}: {e}")
                    version = versions.get(canonicalize_name(req.name))
                    if version is None:
                        continue
                    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
                    marker = f"; {req.marker}" if req.marker else ""
                    lines.append(f"{req.name}{extras}=={version}{marker}")
            with open(os.path.join(out_dir, pak), "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
            print(pak)


def relock(lock_path, out_path, mirror):
    """The lock with every wheel URL pointing at the same file in the mirror's files/."""
    mirror = os.path.abspath(mirror)
    with open(lock_path, encoding="utf-8") as f:
        text = f.read()
    count = 0

    def repl(match):
        nonlocal count
        count += 1
        name = match.group(2).rsplit("/", 1)[-1]
        if not os.path.exists(os.path.join(mirror, "files", name.replace("%2B", "+"))):
            fail(f"{name} is not in the mirror {mirror}/files")
        return f'{match.group(1)}"file://{mirror}/files/{name}"'

    text = re.sub(r'(?m)^(url = )"([^"]+\.whl)"', repl, text)
    if count == 0:
        fail(f"no wheel URL in {lock_path}")
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(text)


def blobs(data_dir):
    total = 0
    root = os.path.join(data_dir, "docker", "registry", "v2", "blobs")
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name == "data":
                total += os.path.getsize(os.path.join(dirpath, name))
    print(total)


def layer_list(path):
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("layers", [])


def layers(manifest, previous):
    now = layer_list(manifest)
    before = {layer["digest"] for layer in layer_list(previous)}
    new = [layer for layer in now if layer["digest"] not in before]
    print(len(new), sum(layer["size"] for layer in new), len(now))


def read_dists(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                name, _, version = line.partition("==")
                out[canonicalize_name(name)] = version
    return out


def dists(a_path, b_path, a_name, b_name):
    a, b = read_dists(a_path), read_dists(b_path)
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    differ = sorted(n for n in set(a) & set(b) if a[n] != b[n])
    print(f"installed distributions: {a_name} {len(a)}, {b_name} {len(b)}, same name and version: "
          f"{len(set(a) & set(b)) - len(differ)}")
    for n in only_a:
        print(f"  only in {a_name}: {n}=={a[n]}")
    for n in only_b:
        print(f"  only in {b_name}: {n}=={b[n]}")
    for n in differ:
        print(f"  version differs: {n}: {a_name} {a[n]}, {b_name} {b[n]}")
    if not (only_a or only_b or differ):
        print("  no difference")


def link_over(source, target):
    """target becomes a hard link to source (same bytes already: only the disk use changes)."""
    tmp = target + ".dedup-tmp"
    os.link(source, tmp)
    os.replace(tmp, target)


def dedup(work):
    """Disk only, after a scenario is measured: comfypak's cache copied its wheels from the
    wheelhouse and its registry stores the blobs its cache holds. The cache's wheel files
    become hard links to the wheelhouse's (same file name and size) and the registry's blob
    files hard links to the cache's (same digest and size). The cache's own files keep their
    inodes and mtimes, so its blob stamps still hold and nothing comfypak reads changes."""
    linked = 0
    files = os.path.join(work, "mirror", "files")
    wheels = os.path.join(work, "comfypak-cache", "wheels", "v1")
    for dirpath, _, names in os.walk(wheels):
        for name in names:
            if not name.endswith(".whl"):
                continue
            path, mirror = os.path.join(dirpath, name), os.path.join(files, name)
            if not os.path.exists(mirror):
                continue
            a, b = os.stat(path), os.stat(mirror)
            if a.st_size == b.st_size and (a.st_ino, a.st_dev) != (b.st_ino, b.st_dev):
                link_over(mirror, path)
                linked += a.st_size
    blobs = os.path.join(work, "comfypak-cache", "layers", "blobs", "sha256")
    registry = os.path.join(work, "registry-comfypak", "data", "docker", "registry", "v2",
                            "blobs", "sha256")
    for dirpath, _, names in os.walk(registry):
        if "data" not in names:
            continue
        digest = os.path.basename(dirpath)
        path, cached = os.path.join(dirpath, "data"), os.path.join(blobs, digest)
        if not os.path.exists(cached):
            continue
        a, b = os.stat(path), os.stat(cached)
        if a.st_size == b.st_size and (a.st_ino, a.st_dev) != (b.st_ino, b.st_dev):
            link_over(cached, path)
            linked += a.st_size
    print(linked)


def human(n):
    n = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def ratio(a, b):
    a, b = float(a), float(b)
    if b == 0:
        return "-" if a == 0 else "inf"
    return f"{a / b:.3f}x"


def table(path):
    rows = {}
    order = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            scenario, tool, build_s, push_s, new_layers, new_bytes, pushed, layers_total = (
                line.rstrip("\n").split("\t"))
            if scenario not in order:
                order.append(scenario)
            rows[(scenario, tool)] = dict(
                build=float(build_s), push=float(push_s), new=int(new_layers),
                new_bytes=int(new_bytes), pushed=int(pushed), total=int(layers_total))
    head = ("| scenario | tool | build s | push s | wall s | layers rebuilt | new-layer bytes "
            "| bytes pushed |")
    print(head)
    print("|" + "---|" * 8)
    for scenario in order:
        for tool in ("dockerfile", "comfypak"):
            r = rows.get((scenario, tool))
            if r is None:
                continue
            print(f"| {scenario} | {tool} | {r['build']:.1f} | {r['push']:.1f} | "
                  f"{r['build'] + r['push']:.1f} | {r['new']} of {r['total']} | "
                  f"{human(r['new_bytes'])} | {human(r['pushed'])} |")
        c, d = rows.get((scenario, "comfypak")), rows.get((scenario, "dockerfile"))
        if c and d:
            print(f"| {scenario} | **ratio c/d** | {ratio(c['build'], d['build'])} | "
                  f"{ratio(c['push'], d['push'])} | "
                  f"{ratio(c['build'] + c['push'], d['build'] + d['push'])} | "
                  f"{c['new']}/{d['new']} | {ratio(c['new_bytes'], d['new_bytes'])} | "
                  f"{ratio(c['pushed'], d['pushed'])} |")


def main(argv):
    commands = {
        "pad": (pad, 3), "pin": (pin, 3), "relock": (relock, 3), "blobs": (blobs, 1),
        "layers": (layers, 2), "dists": (dists, 4), "table": (table, 1), "dedup": (dedup, 1),
    }
    if not argv or argv[0] not in commands or len(argv) - 1 != commands[argv[0]][1]:
        fail(__doc__)
    function, _ = commands[argv[0]]
    function(*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
