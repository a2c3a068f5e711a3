#!/usr/bin/env python3
"""Packs gpu-bundle/ into one xz-compressed tar for the device call, and
unpacks it there (tools/gpu-check.sh bundle / run).

The device call carries at most 64 MiB, so the archive stores each distinct
file once: the fixtures share their tokenizer files byte for byte, and a
file equal to one already packed is listed in DUPLICATES instead
("copy<TAB>original", paths inside the bundle), to be copied back on
unpacking. Only the standard library is used: the GPU machine has Python
but no xz or zstd program is promised there.

    gpu-bundle.py pack DIR ARCHIVE LIMIT_MIB    # refuses an archive over the limit
    gpu-bundle.py unpack ARCHIVE DIR
"""

import hashlib
import io
import os
import shutil
import sys
import tarfile

MANIFEST = "DUPLICATES"


def pack(folder, archive, limit_mib):
    seen = {}
    duplicates = []
    tmp = archive + ".tmp"
    with tarfile.open(tmp, "w:xz", preset=6) as tar:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, folder)
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                if digest in seen:
                    duplicates.append(f"{rel}\t{seen[digest]}\n")
                    continue
                seen[digest] = rel
                tar.add(path, arcname=rel, recursive=False)
        listing = "".join(duplicates).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(listing)
        tar.addfile(info, io.BytesIO(listing))
    size = os.path.getsize(tmp)
    mib = size / 2**20
    print(f"{archive}: {mib:.1f} MiB ({size} bytes), {len(seen)} files stored, {len(duplicates)} duplicates listed")
    if mib > limit_mib:
        os.remove(tmp)
        sys.exit(f"error: {archive} would be {mib:.1f} MiB, over the {limit_mib} MiB limit (the device call carries 64 MiB in all)")
    os.replace(tmp, archive)


def unpack(archive, folder):
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with tarfile.open(archive, "r:xz") as tar:
        for member in tar.getmembers():
            target = os.path.realpath(os.path.join(folder, member.name))
            if not target.startswith(os.path.realpath(folder) + os.sep):
                sys.exit(f"error: {archive}: member {member.name} lies outside {folder}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(folder, filter="data")
        else:
            tar.extractall(folder)
    manifest = os.path.join(folder, MANIFEST)
    with open(manifest) as f:
        for line in f:
            copy, original = line.rstrip("\n").split("\t")
            os.makedirs(os.path.dirname(os.path.join(folder, copy)) or folder, exist_ok=True)
            shutil.copy2(os.path.join(folder, original), os.path.join(folder, copy))
    os.remove(manifest)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "pack":
        pack(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif len(sys.argv) == 4 and sys.argv[1] == "unpack":
        unpack(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
