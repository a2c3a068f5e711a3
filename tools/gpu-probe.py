#!/usr/bin/env python3
"""Probe a lent GPU machine with nothing but the Python standard library.

    python3 tools/gpu-probe.py [gpu-bundle/gelu.ptx]

Steps, each reported on its own line, then one JSON summary:
  1. load libcuda.so.1 (ctypes), cuInit, driver version, devices;
  2. retain the primary context of device 0 and make it current
     (cuCtxCreate is cuCtxCreate_v4 with a params struct in CUDA 13;
     the primary-context calls are the same in every version);
  3. load the PTX with cuModuleLoadDataEx (JIT log captured);
  4. run gelu_{fwd,bwd}_{f32,bf16} on ~1M elements through cuLaunchKernel
     with a void** argument array, on a grid smaller than n so that the
     grid-stride loops iterate, with outputs poisoned (NaN) beforehand,
     and compare against an f64 math.erf reference;
  5. dlopen libcublasLt and libnvrtc (13, 12, unversioned) and say which
     loaded, from which file (/proc/self/maps), and their versions.

Exit status: 0 all passed, 2 libcuda not found, 1 any other failure.
Never prints a bare traceback.
"""

import ctypes
import json
import math
import os
import random
import struct
import sys
import time

N = 1_000_003          # about 1M, and not a multiple of the block size
BLOCK = 256
GRID = 1024            # 262144 threads < N: every thread loops ~4 times
POISON = 0xFFFFFFFF    # NaN as f32, and NaN in both bf16 halves

# One tolerance rule per dtype: |got - ref| <= atol + rtol * |ref|, ref in f64.
TOL = {"f32": (1e-5, 1e-5), "bf16": (1e-5, 2.0 ** -7)}

SUMMARY = {"ok": False, "libcuda": None, "driver": None, "devices": [],
           "context": None, "ptx": None, "kernels": {}, "libraries": {},
           "errors": []}


def say(step, msg):
    print(f"[{step}] {msg}", flush=True)


def fail(step, msg):
    say(step, "FAILED: " + msg)
    SUMMARY["errors"].append(f"{step}: {msg}")


class CudaError(Exception):
    pass


def mapped_files():
    """Paths of the shared objects mapped into this process."""
    paths = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    paths.add(parts[5].strip())
    except OSError:
        pass
    return paths


def dlopen(name):
    """(handle, real path) or raise OSError. The path is read from
    /proc/self/maps: the new file mapped by this dlopen, or the file
    already mapped whose name starts like `name`."""
    before = mapped_files()
    lib = ctypes.CDLL(name)
    after = mapped_files()
    stem = name.split(".so")[0]
    new = sorted(p for p in after - before if os.path.basename(p).startswith(stem))
    if not new:
        new = sorted(p for p in after if os.path.basename(p).startswith(stem))
    return lib, (new[0] if new else "(not found in /proc/self/maps)")


# --------------------------------------------------------------------------
# The CUDA driver API through ctypes
# --------------------------------------------------------------------------

c_int, c_uint, c_size_t, c_void_p, c_char_p = (
    ctypes.c_int, ctypes.c_uint, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p)
c_ptr = ctypes.c_uint64  # CUdeviceptr
P = ctypes.POINTER

SIGNATURES = {
    "cuInit": [c_uint],
    "cuDriverGetVersion": [P(c_int)],
    "cuDeviceGetCount": [P(c_int)],
    "cuDeviceGet": [P(c_int), c_int],
    "cuDeviceGetName": [c_char_p, c_int, c_int],
    "cuDeviceGetAttribute": [P(c_int), c_int, c_int],
    "cuDeviceTotalMem_v2": [P(c_size_t), c_int],
    "cuDevicePrimaryCtxRetain": [P(c_void_p), c_int],
    "cuDevicePrimaryCtxRelease_v2": [c_int],
    "cuCtxSetCurrent": [c_void_p],
    "cuCtxSynchronize": [],
    "cuModuleLoadDataEx": [P(c_void_p), c_void_p, c_uint, P(c_int), P(c_void_p)],
    "cuModuleGetFunction": [P(c_void_p), c_void_p, c_char_p],
    "cuModuleUnload": [c_void_p],
    "cuMemAlloc_v2": [P(c_ptr), c_size_t],
    "cuMemFree_v2": [c_ptr],
    "cuMemcpyHtoD_v2": [c_ptr, c_void_p, c_size_t],
    "cuMemcpyDtoH_v2": [c_void_p, c_ptr, c_size_t],
    "cuMemsetD32_v2": [c_ptr, c_uint, c_size_t],
    "cuLaunchKernel": [c_void_p, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint,
                       c_uint, c_void_p, P(c_void_p), P(c_void_p)],
    "cuEventCreate": [P(c_void_p), c_uint],
    "cuEventRecord": [c_void_p, c_void_p],
    "cuEventSynchronize": [c_void_p],
    "cuEventElapsedTime_v2": [P(ctypes.c_float), c_void_p, c_void_p],
    "cuEventElapsedTime": [P(ctypes.c_float), c_void_p, c_void_p],
    "cuEventDestroy_v2": [c_void_p],
    "cuGetErrorName": [c_int, P(c_char_p)],
    "cuGetErrorString": [c_int, P(c_char_p)],
}

ATTR_SM_COUNT = 16
ATTR_CC_MAJOR = 75
ATTR_CC_MINOR = 76
JIT_INFO_LOG_BUFFER, JIT_INFO_LOG_SIZE = 3, 4
JIT_ERROR_LOG_BUFFER, JIT_ERROR_LOG_SIZE = 5, 6


class Driver:
    def __init__(self, lib):
        self.lib = lib

    def has(self, name):
        return hasattr(self.lib, name)

    def error_text(self, rc):
        name, text = c_char_p(), c_char_p()
        try:
            self.fn("cuGetErrorName")(rc, ctypes.byref(name))
            self.fn("cuGetErrorString")(rc, ctypes.byref(text))
        except (AttributeError, CudaError):
            pass
        name = name.value.decode() if name.value else "?"
        text = text.value.decode() if text.value else "?"
        return f"CUresult {rc} {name}: {text}"

    def fn(self, name):
        try:
            f = getattr(self.lib, name)
        except AttributeError:
            raise CudaError(f"libcuda has no symbol {name}") from None
        f.argtypes = SIGNATURES[name]
        f.restype = c_int
        return f

    def __call__(self, name, *args):
        rc = self.fn(name)(*args)
        if rc != 0:
            raise CudaError(f"{name} failed: {self.error_text(rc)}")


class DeviceBuffer:
    """nbytes of device memory; the allocation is rounded up to whole 32-bit
    words so that poison() can fill it with cuMemsetD32."""

    def __init__(self, cu, nbytes):
        self.cu, self.nbytes, self.ptr = cu, nbytes, c_ptr(0)
        self.words = (nbytes + 3) // 4
        cu("cuMemAlloc_v2", ctypes.byref(self.ptr), self.words * 4)

    def poison(self):
        self.cu("cuMemsetD32_v2", self.ptr, POISON, self.words)

    def upload(self, host):
        self.cu("cuMemcpyHtoD_v2", self.ptr, ctypes.addressof(host), self.nbytes)

    def download(self, host):
        self.cu("cuMemcpyDtoH_v2", ctypes.addressof(host), self.ptr, self.nbytes)

    def free(self):
        if self.ptr.value:
            try:
                self.cu("cuMemFree_v2", self.ptr)
            except CudaError as e:
                say("free", str(e))
            self.ptr = c_ptr(0)


def launch(cu, func, grid, block, *args):
    """cuLaunchKernel with a void** array: one pointer to each argument."""
    params = (c_void_p * len(args))(*[ctypes.addressof(a) for a in args])
    cu("cuLaunchKernel", func, grid, 1, 1, block, 1, 1, 0, None, params, None)


# --------------------------------------------------------------------------
# Host data and the f64 reference
# --------------------------------------------------------------------------

INV_SQRT2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu_ref(x):
    return 0.5 * x * (1.0 + math.erf(x * INV_SQRT2))


def gelu_grad_ref(x):
    return 0.5 * (1.0 + math.erf(x * INV_SQRT2)) + x * INV_SQRT_2PI * math.exp(-0.5 * x * x)


def make_inputs(n, seed):
    """Random non-zero values in [-6, 6], led by extreme ones."""
    rng = random.Random(seed)
    special = [0.0, -0.0, 1e-30, -1e-30, 1e-3, -1e-3, 3.0, -3.0, 5.5, -5.5,
               10.0, -10.0, 40.0, -40.0, 1e4, -1e4]
    vals = special + [rng.uniform(-6.0, 6.0) or 0.5 for _ in range(n - len(special))]
    return vals[:n]


def f32_array(vals):
    """ctypes float array; its elements read back as the f32-rounded values."""
    return (ctypes.c_float * len(vals))(*vals)


def bf16_bits(vals):
    """f64 values -> bf16 bit patterns, round to nearest even via f32."""
    n = len(vals)
    words = struct.unpack(f"<{n}I", struct.pack(f"<{n}f", *vals))
    out = []
    for w in words:
        if (w & 0x7F800000) == 0x7F800000 and (w & 0x007FFFFF):
            out.append(0x7FC0)  # NaN stays NaN
        else:
            out.append(((w + 0x7FFF + ((w >> 16) & 1)) >> 16) & 0xFFFF)
    return out


def bf16_values(bits):
    n = len(bits)
    return struct.unpack(f"<{n}f", struct.pack(f"<{n}I", *[b << 16 for b in bits]))


def compare(got, ref, dtype):
    """(max abs error or NaN, count outside atol + rtol*|ref|, first bad index)."""
    atol, rtol = TOL[dtype]
    max_err, nan_seen, bad, first_bad = 0.0, False, 0, None
    for i, (g, r) in enumerate(zip(got, ref)):
        err = abs(g - r)
        if not err <= atol + rtol * abs(r):  # NaN (an unwritten element) lands here too
            bad += 1
            if first_bad is None:
                first_bad = i
        if err != err:
            nan_seen = True
        elif err > max_err:
            max_err = err
    return (float("nan") if nan_seen else max_err), bad, first_bad


# --------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------

def load_libcuda():
    errors = []
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib, path = dlopen(name)
        except OSError as e:
            errors.append(f"{name}: {e}")
            continue
        say("libcuda", f"loaded {name} from {path}")
        SUMMARY["libcuda"] = path
        return Driver(lib)
    fail("libcuda", "libcuda not found (no NVIDIA driver on this machine?): " + "; ".join(errors))
    return None


def device_info(cu):
    cu("cuInit", 0)
    say("init", "cuInit ok")
    v = c_int()
    cu("cuDriverGetVersion", ctypes.byref(v))
    SUMMARY["driver"] = f"{v.value // 1000}.{(v.value % 1000) // 10}"
    say("driver", f"cuDriverGetVersion = {v.value} (CUDA {SUMMARY['driver']})")
    count = c_int()
    cu("cuDeviceGetCount", ctypes.byref(count))
    say("devices", f"{count.value} device(s)")
    for ordinal in range(count.value):
        dev = c_int()
        cu("cuDeviceGet", ctypes.byref(dev), ordinal)
        name = ctypes.create_string_buffer(256)
        cu("cuDeviceGetName", name, 256, dev)
        attrs = {}
        for key, attr in (("cc_major", ATTR_CC_MAJOR), ("cc_minor", ATTR_CC_MINOR),
                          ("sms", ATTR_SM_COUNT)):
            out = c_int()
            cu("cuDeviceGetAttribute", ctypes.byref(out), attr, dev)
            attrs[key] = out.value
        mem = c_size_t()
        cu("cuDeviceTotalMem_v2", ctypes.byref(mem), dev)
        info = {"ordinal": ordinal, "name": name.value.decode(errors="replace"),
                "compute_capability": f"{attrs['cc_major']}.{attrs['cc_minor']}",
                "sms": attrs["sms"], "memory_gib": round(mem.value / 2**30, 1)}
        SUMMARY["devices"].append(info)
        say("devices", f"#{ordinal}: {info['name']}, sm_{attrs['cc_major']}{attrs['cc_minor']}, "
                       f"{info['sms']} SMs, {info['memory_gib']} GiB")
    if count.value == 0:
        raise CudaError("no CUDA devices")


def open_context(cu):
    dev = c_int()
    cu("cuDeviceGet", ctypes.byref(dev), 0)
    ctx = c_void_p()
    cu("cuDevicePrimaryCtxRetain", ctypes.byref(ctx), dev)
    cu("cuCtxSetCurrent", ctx)
    SUMMARY["context"] = "primary context of device 0"
    say("context", "primary context of device 0 retained and current")
    return dev


def load_module(cu, ptx_path):
    with open(ptx_path, "rb") as f:
        ptx = f.read()
    image = ctypes.create_string_buffer(ptx)  # NUL-terminated, as the driver wants
    version = next((l.split()[1].decode() for l in ptx.splitlines()
                    if l.startswith(b".version")), "?")
    target = next((l.split()[1].decode() for l in ptx.splitlines()
                   if l.startswith(b".target")), "?")
    say("ptx", f"{ptx_path}: {len(ptx)} bytes, PTX ISA {version}, target {target}")
    log_size = 16384
    err_log = ctypes.create_string_buffer(log_size)
    info_log = ctypes.create_string_buffer(log_size)
    opts = (c_int * 4)(JIT_ERROR_LOG_BUFFER, JIT_ERROR_LOG_SIZE, JIT_INFO_LOG_BUFFER, JIT_INFO_LOG_SIZE)
    vals = (c_void_p * 4)(ctypes.addressof(err_log), log_size, ctypes.addressof(info_log), log_size)
    module = c_void_p()
    try:
        cu("cuModuleLoadDataEx", ctypes.byref(module), ctypes.addressof(image), 4, opts, vals)
    except CudaError as e:
        log = err_log.value.decode(errors="replace").strip()
        raise CudaError(f"{e}; JIT error log: {log or '(empty)'}") from None
    SUMMARY["ptx"] = {"path": ptx_path, "isa": version, "target": target, "loaded": True}
    info = info_log.value.decode(errors="replace").strip()
    say("ptx", "module loaded" + (f"; JIT info: {info}" if info else ""))
    return module


def get_function(cu, module, name):
    func = c_void_p()
    cu("cuModuleGetFunction", ctypes.byref(func), module, name.encode())
    return func


def time_kernel(cu, func, args, iters=20):
    """Milliseconds per launch, averaged over iters, between two events."""
    start, stop = c_void_p(), c_void_p()
    cu("cuEventCreate", ctypes.byref(start), 0)
    cu("cuEventCreate", ctypes.byref(stop), 0)
    try:
        launch(cu, func, GRID, BLOCK, *args)  # warm-up
        cu("cuEventRecord", start, None)
        for _ in range(iters):
            launch(cu, func, GRID, BLOCK, *args)
        cu("cuEventRecord", stop, None)
        cu("cuEventSynchronize", stop)
        ms = ctypes.c_float()
        name = "cuEventElapsedTime_v2" if cu.has("cuEventElapsedTime_v2") else "cuEventElapsedTime"
        cu(name, ctypes.byref(ms), start, stop)
        return ms.value / iters
    finally:
        for ev in (start, stop):
            if ev.value:
                cu("cuEventDestroy_v2", ev)


def check_gelu(cu, module, dtype):
    """Run gelu_fwd_<dtype> and gelu_bwd_<dtype> on N elements; record results."""
    xs = make_inputs(N, seed=1)
    dys = make_inputs(N, seed=2)[::-1]
    if dtype == "f32":
        host_x, host_dy = f32_array(xs), f32_array(dys)
        host_out = (ctypes.c_float * N)()
        elem = 4
        x_vals, dy_vals = list(host_x), list(host_dy)

        def read(out):
            return list(out)
    else:
        xb, dyb = bf16_bits(xs), bf16_bits(dys)
        host_x = (ctypes.c_uint16 * N)(*xb)
        host_dy = (ctypes.c_uint16 * N)(*dyb)
        host_out = (ctypes.c_uint16 * N)()
        elem = 2
        x_vals, dy_vals = bf16_values(xb), bf16_values(dyb)

        def read(out):
            return bf16_values(list(out))

    nbytes = N * elem
    bufs = []
    try:
        for _ in range(3):
            bufs.append(DeviceBuffer(cu, nbytes))
        d_x, d_dy, d_out = bufs
        for d in bufs:
            d.poison()
        d_x.upload(host_x)
        d_dy.upload(host_dy)
        n = c_int(N)

        for kind in ("fwd", "bwd"):
            kname = f"gelu_{kind}_{dtype}"
            try:
                func = get_function(cu, module, kname)
                d_out.poison()
                args = (d_x.ptr, d_out.ptr, n) if kind == "fwd" else (d_x.ptr, d_dy.ptr, d_out.ptr, n)
                launch(cu, func, GRID, BLOCK, *args)
                cu("cuCtxSynchronize")
                d_out.download(host_out)
                got = read(host_out)
                if kind == "fwd":
                    ref = [gelu_ref(x) for x in x_vals]
                else:
                    ref = [dy * gelu_grad_ref(x) for x, dy in zip(x_vals, dy_vals)]
                max_err, bad, first_bad = compare(got, ref, dtype)
                ms = time_kernel(cu, func, args)
                moved = nbytes * (2 if kind == "fwd" else 3)
                result = {"n": N, "grid": GRID, "block": BLOCK, "max_abs_err": max_err,
                          "out_of_tolerance": bad, "tolerance": TOL[dtype],
                          "ms": round(ms, 4), "gb_per_s": round(moved / ms / 1e6, 1)}
                if dtype == "bf16":
                    # the best a bf16 output can do: the reference rounded to bf16
                    floor = compare(bf16_values(bf16_bits(ref)), ref, dtype)[0]
                    result["plain_bf16_max_abs_err"] = floor
                ok = bad == 0
                result["ok"] = ok
                SUMMARY["kernels"][kname] = result
                line = (f"max abs err {max_err:.3e}, {bad} of {N} outside "
                        f"atol {TOL[dtype][0]:g} + rtol {TOL[dtype][1]:g}*|ref|, "
                        f"{ms * 1000:.1f} us/launch, {result['gb_per_s']} GB/s")
                if ok:
                    say(kname, "ok: " + line)
                else:
                    i = first_bad
                    fail(kname, f"{line}; first bad i={i}: x={x_vals[i]!r} got={got[i]!r} ref={ref[i]!r}")
            except CudaError as e:
                SUMMARY["kernels"][kname] = {"ok": False, "error": str(e)}
                fail(kname, str(e))
    finally:
        for d in bufs:
            d.free()


def probe_libraries():
    probes = {
        "cublasLt": ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"],
        "nvrtc": ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"],
    }
    for family, names in probes.items():
        results = {}
        for name in names:
            try:
                lib, path = dlopen(name)
            except OSError as e:
                results[name] = {"loaded": False, "error": str(e)}
                say("dlopen", f"{name}: not loaded ({e})")
                continue
            version = library_version(family, lib)
            results[name] = {"loaded": True, "path": path, "version": version}
            say("dlopen", f"{name}: loaded from {path}, version {version}")
        SUMMARY["libraries"][family] = results


def library_version(family, lib):
    try:
        if family == "cublasLt":
            f = lib.cublasLtGetVersion
            f.restype, f.argtypes = c_size_t, []
            return str(f())
        major, minor = c_int(), c_int()
        f = lib.nvrtcVersion
        f.restype, f.argtypes = c_int, [P(c_int), P(c_int)]
        rc = f(ctypes.byref(major), ctypes.byref(minor))
        return f"{major.value}.{minor.value}" if rc == 0 else f"(nvrtcVersion returned {rc})"
    except AttributeError as e:
        return f"(unknown: {e})"


def main(argv):
    ptx_path = argv[1] if len(argv) > 1 else "gpu-bundle/gelu.ptx"
    started = time.time()
    exit_code = 1
    cu = load_libcuda()
    if cu is None:
        exit_code = 2
    else:
        context_dev = None
        try:
            device_info(cu)
            context_dev = open_context(cu)
        except CudaError as e:
            fail("device", str(e))
        if context_dev is not None:
            module = None
            try:
                if not os.path.isfile(ptx_path):
                    raise CudaError(f"PTX file {ptx_path} not found")
                module = load_module(cu, ptx_path)
            except (CudaError, OSError) as e:
                SUMMARY["ptx"] = {"path": ptx_path, "loaded": False, "error": str(e)}
                fail("ptx", str(e))
            if module is not None:
                for dtype in ("f32", "bf16"):
                    try:
                        check_gelu(cu, module, dtype)
                    except CudaError as e:
                        fail(f"gelu_{dtype}", str(e))
                try:
                    cu("cuModuleUnload", module)
                except CudaError as e:
                    say("ptx", f"unload: {e}")
            try:
                cu("cuDevicePrimaryCtxRelease_v2", context_dev)
            except CudaError as e:
                say("context", f"release: {e}")
        expected = {f"gelu_{k}_{t}" for k in ("fwd", "bwd") for t in ("f32", "bf16")}
        kernels_ok = (set(SUMMARY["kernels"]) == expected
                      and all(r.get("ok") for r in SUMMARY["kernels"].values()))
        if kernels_ok and not SUMMARY["errors"]:
            exit_code = 0
    probe_libraries()
    SUMMARY["ok"] = exit_code == 0
    SUMMARY["seconds"] = round(time.time() - started, 1)
    return exit_code


def strict_json(v):
    """NaN and infinities as strings, so the summary is valid JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: strict_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [strict_json(x) for x in v]
    return v


def print_summary():
    print("=== gpu-probe summary (json) ===", flush=True)
    print(json.dumps(strict_json(SUMMARY), indent=2, default=str, allow_nan=False), flush=True)


if __name__ == "__main__":
    try:
        code = main(sys.argv)
    except KeyboardInterrupt:
        SUMMARY["errors"].append("interrupted")
        code = 130
    except Exception as e:  # a bug in this script: report it, do not dump a traceback
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f" at line {tb.tb_lineno}" if tb is not None else ""
        fail("probe", f"internal error{where}: {type(e).__name__}: {e}")
        code = 1
    print_summary()
    sys.exit(code)
