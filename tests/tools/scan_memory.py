"""Looks for secrets in a live process: its environment, its command line and every
readable, writable memory region (heap, stacks, anonymous mappings), where keys would
live. Usage: scan_memory.py PID NAME=HEX [NAME=HEX ...]; prints one line per secret
found, as `found NAME in WHERE`, and `scanned N bytes` last."""

import sys


def regions(pid):
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            perms = parts[1]
            name = parts[5] if len(parts) > 5 else "[anonymous]"
            if perms.startswith("rw") and name not in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                yield start, end, name


def main():
    pid = int(sys.argv[1])
    needles = {}
    for arg in sys.argv[2:]:
        name, value = arg.split("=", 1)
        needles[name] = bytes.fromhex(value)
    for where in ("environ", "cmdline"):
        with open(f"/proc/{pid}/{where}", "rb") as f:
            data = f.read()
        for name, needle in needles.items():
            if needle in data:
                print(f"found {name} in {where}")
    scanned = 0
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for start, end, region in regions(pid):
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue
            scanned += len(data)
            for name, needle in needles.items():
                if needle in data:
                    print(f"found {name} in memory {region}")
    print(f"scanned {scanned} bytes")


if __name__ == "__main__":
    main()
