"""Build of lyra2._core (the C core in csrc/ with its Python glue in csrc/python/, plus the CUDA backend
csrc/nn/cuda/*.cu when a CUDA toolkit is found) and of the test-only lyra2._testops (csrc/testing/), which
links the same core objects.

Environment:
  LYRA2_CUDA=0|1      force the CUDA part off / on (default: on when nvcc and cuBLAS are found)
  LYRA2_CUDA_EMU=1    compile the CUDA backend's .cu files with the host C++ compiler against the CPU emulation
                      in csrc/nn/cuda/emu/ (no toolkit, no GPU): device="cuda" runs the real kernels thread by
                      thread on the CPU, for CI and debugging (slow; see README, developer section)
  LYRA2_CUDA_ARCH     nvcc -gencode list, default "arch=compute_90,code=sm_90" (H100/H200)
  LYRA2_SANITIZE=1    build with -fsanitize=address,undefined (see README, developer section)
  LYRA2_DEBUG=1       -O0 -g
"""
import concurrent.futures
import glob
import os
import shutil
import subprocess
import sys
import sysconfig

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
CUDA_DIR = os.path.join(ROOT, "csrc", "nn", "cuda")
TESTING_DIR = os.path.join(ROOT, "csrc", "testing")
# Glue compiled per extension; every other csrc/**.c is the shared core (BuildExt compiles it once).
GLUE_DIRS = (os.path.join("csrc", "python", ""), os.path.join("csrc", "testing", ""))
SHARED = {}
CUDA_CORE_SOURCES = sorted(glob.glob(os.path.join(CUDA_DIR, "*.cu")))
CUDA_TEST_SOURCES = sorted(glob.glob(os.path.join(TESTING_DIR, "*.cu")))


def pkg_config(*args):
    try:
        out = subprocess.check_output(["pkg-config", *args], text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(
            f"lyra2 build: pkg-config {' '.join(args)} failed ({e}).\n"
            "Install the libav development packages first, e.g.\n"
            "  apt-get install pkg-config libavcodec-dev libavformat-dev libswscale-dev libavutil-dev"
        )
    return out.split()


def find_cuda():
    """Returns (nvcc, include_dirs, library_dirs, libraries) or None."""
    if emulation():
        return None
    want = os.environ.get("LYRA2_CUDA")
    if want == "0":
        return None
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    nvcc = shutil.which("nvcc") or (os.path.join(home, "bin", "nvcc") if os.path.exists(os.path.join(home, "bin", "nvcc")) else None)
    if nvcc is None:
        if want == "1":
            raise SystemExit("lyra2 build: LYRA2_CUDA=1 but nvcc was not found (set CUDA_HOME)")
        return None
    inc = [os.path.join(home, "include")]
    libdirs = [os.path.join(home, "lib64")]
    # cuBLAS ships in the toolkit on most installs; otherwise in NVIDIA's PyPI wheel (nvidia-cublas).
    cublas_inc = None
    for d in [os.path.join(home, "include")] + [os.path.join(p, "nvidia", sub, "include")
                                                 for p in sys.path if p for sub in ("cu13", "cublas")]:
        if os.path.exists(os.path.join(d, "cublasLt.h")):
            cublas_inc = d
            break
    if cublas_inc is None:
        if want == "1":
            raise SystemExit("lyra2 build: LYRA2_CUDA=1 but cublasLt.h was not found "
                             "(pip install nvidia-cublas, then build with --no-build-isolation)")
        print("lyra2 build: nvcc found but no cuBLAS headers; building CPU only", file=sys.stderr)
        return None
    if cublas_inc not in inc:
        inc.append(cublas_inc)
        libdirs.append(os.path.join(os.path.dirname(cublas_inc), "lib"))
    libs = []
    for name in ("cublas", "cublasLt"):
        for d in libdirs:
            hits = sorted(glob.glob(os.path.join(d, f"lib{name}.so*")))
            if hits:
                plain = os.path.join(d, f"lib{name}.so")
                libs.append(name if os.path.exists(plain) else ":" + os.path.basename(hits[0]))
                break
        else:
            if want == "1":
                raise SystemExit(f"lyra2 build: lib{name}.so not found in {libdirs}")
            print(f"lyra2 build: lib{name}.so not found; building CPU only", file=sys.stderr)
            return None
    return nvcc, inc, libdirs, libs


def emulation():
    return os.environ.get("LYRA2_CUDA_EMU") == "1"


def _stale(obj, deps):
    return not os.path.exists(obj) or os.path.getmtime(obj) < max(os.path.getmtime(p) for p in deps)


class BuildExt(build_ext):
    """Compiles the shared core once and links it into both extensions.

    The C files outside csrc/python/ and csrc/testing/ (and, with CUDA, csrc/nn/cuda/*.cu via nvcc) become one
    set of objects in build_temp, recompiled only when their source or a header changed and compiled -j at a
    time. lyra2._core links all of them; the test-only lyra2._testops links against _core's shared object
    ($ORIGIN rpath), so the two modules share ONE runtime: the same backends, device pools and counters (a
    static copy would give the tests a second CUDA context and counters that _core never sees). Each extension
    compiles just its own glue."""

    def build_extensions(self):
        shared = SHARED
        objs = self._compile_shared(shared)
        core_path = self.get_ext_fullpath("lyra2._core")
        # _core first and alone (not in parallel with _testops, which links against it)
        for ext in sorted(self.extensions, key=lambda e: e.name != "lyra2._core"):
            if ext.name == "lyra2._core":
                extra = objs
            else:
                extra = self._compile_cuda(shared, CUDA_TEST_SOURCES)
                ext.library_dirs = list(ext.library_dirs or []) + [os.path.dirname(core_path)]
                ext.extra_link_args = list(ext.extra_link_args or []) + [
                    "-l:" + os.path.basename(core_path), "-Wl,-rpath,$ORIGIN"]
                extra_deps = [core_path]
                ext.depends = list(ext.depends or []) + extra_deps
            ext.extra_objects = list(ext.extra_objects or []) + extra
            ext.depends = list(ext.depends or []) + extra  # relink when a shared object changed
            self.build_extension(ext)

    def _compile_shared(self, shared):
        jobs = []
        for src in shared["sources"]:
            obj = os.path.join(self.build_temp, os.path.splitext(src)[0] + ".o")
            jobs.append((src, obj))
        headers = shared["depends"]
        os.makedirs(self.build_temp, exist_ok=True)
        # Objects built with other flags (LYRA2_CUDA, LYRA2_DEBUG, another compiler) are not reused.
        stamp = os.path.join(self.build_temp, "lyra2_core_flags.txt")
        flags = repr((self.compiler.compiler_so, shared["define_macros"], shared["include_dirs"],
                      shared["extra_compile_args"], bool(shared["cuda"])))
        same = os.path.exists(stamp) and open(stamp).read() == flags
        todo = [(s, o) for s, o in jobs if self.force or not same or _stale(o, [s] + headers)]

        def compile_one(job):
            src, _ = job
            self.compiler.compile([src], output_dir=self.build_temp, macros=shared["define_macros"],
                                  include_dirs=shared["include_dirs"], extra_postargs=shared["extra_compile_args"])

        with concurrent.futures.ThreadPoolExecutor(max(1, int(self.parallel or 1))) as pool:
            list(pool.map(compile_one, todo))
        with open(stamp, "w") as f:
            f.write(flags)
        return [o for _, o in jobs] + self._compile_cuda(shared, CUDA_CORE_SOURCES)

    def _compile_emulated(self, sources):
        """The .cu files as C++ against csrc/nn/cuda/emu/cuda_emu.h with the host compiler (LYRA2_CUDA_EMU=1)."""
        cxx = os.environ.get("CXX", "g++")
        if os.environ.get("LYRA2_SANITIZE") == "1":
            kind, opt = "asan", ["-O0", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
        elif os.environ.get("LYRA2_DEBUG") == "1":
            kind, opt = "debug", ["-O0", "-g", "-fno-omit-frame-pointer"]
        else:
            kind, opt = "release", ["-O2"]
        out = os.path.join(self.build_temp, "cuda_emu_" + kind)  # one folder per flag set: no stale mix
        os.makedirs(out, exist_ok=True)
        dirs = (CUDA_DIR, os.path.join(CUDA_DIR, "emu"), TESTING_DIR, os.path.join(ROOT, "csrc", "nn"),
                os.path.join(ROOT, "csrc", "core"))
        headers = [h for d in dirs for h in glob.glob(os.path.join(d, "*.h"))] + [os.path.join(ROOT, "csrc", "lyra2.h")]
        jobs, objs = [], []
        for src in sources:
            obj = os.path.join(out, os.path.basename(src) + ".o")
            if self.force or _stale(obj, [src] + headers):
                # -ffp-contract=off: no FMA contraction (see emu/emu_device.h); -fno-strict-aliasing: kernels pun
                # registers through pointer casts as CUDA code does
                jobs.append([cxx, "-x", "c++", "-std=c++17", "-c", src, "-o", obj, "-fPIC", "-Wall", "-Wextra",
                             "-Wno-unknown-pragmas", "-ffp-contract=off", "-fno-strict-aliasing",
                             "-DLYRA2_CUDA_EMU=1", "-DLYRA2_WITH_CUDA=1", "-I" + CUDA_DIR,
                             "-I" + os.path.join(ROOT, "csrc")] + opt)
            objs.append(obj)

        def run(cmd):
            print(" ".join(cmd))
            subprocess.check_call(cmd)

        with concurrent.futures.ThreadPoolExecutor(max(1, int(self.parallel or 1))) as pool:
            list(pool.map(run, jobs))
        return objs

    def _compile_cuda(self, shared, sources):
        if emulation():
            if sources is CUDA_CORE_SOURCES:
                sources = sources + sorted(glob.glob(os.path.join(CUDA_DIR, "emu", "*.cpp")))
            return self._compile_emulated(sources)
        cuda = shared["cuda"]
        if not cuda:
            return []
        nvcc, inc, _, _ = cuda
        arch = os.environ.get("LYRA2_CUDA_ARCH", "arch=compute_90,code=sm_90")
        objs = []
        os.makedirs(self.build_temp, exist_ok=True)
        # what the .cu files include: their own headers, the op contract (nn/*.h) and the core
        dirs = (CUDA_DIR, TESTING_DIR, os.path.join(ROOT, "csrc", "nn"), os.path.join(ROOT, "csrc", "core"))
        headers = [h for d in dirs for h in glob.glob(os.path.join(d, "*.h"))] + [os.path.join(ROOT, "csrc", "lyra2.h")]
        jobs = []
        for src in sources:
            obj = os.path.join(self.build_temp, os.path.basename(src) + ".o")
            if self.force or _stale(obj, [src] + headers):
                cmd = [nvcc, "-c", src, "-o", obj, "-O3", "-std=c++17", "-Xcompiler", "-fPIC",
                       "-Xcompiler", "-Wall", "--expt-relaxed-constexpr", "-lineinfo",
                       "-I" + CUDA_DIR, "-I" + os.path.join(ROOT, "csrc")]
                for a in arch.split(";"):
                    cmd += ["-gencode", a]
                for d in inc:
                    cmd.append("-I" + d)
                jobs.append(cmd)
            objs.append(obj)

        def run(cmd):
            print(" ".join(cmd))
            subprocess.check_call(cmd)

        with concurrent.futures.ThreadPoolExecutor(max(1, int(self.parallel or 1))) as pool:
            list(pool.map(run, jobs))
        return objs


def make_extensions():
    sources = sorted(glob.glob(os.path.join("csrc", "**", "*.c"), recursive=True))
    av = ["libavcodec", "libavformat", "libswscale", "libavutil"]
    cflags = pkg_config("--cflags", *av)
    ldflags = pkg_config("--libs", *av)
    include_dirs = ["csrc", numpy.get_include()] + [f[2:] for f in cflags if f.startswith("-I")]
    library_dirs = [f[2:] for f in ldflags if f.startswith("-L")]
    libraries = [f[2:] for f in ldflags if f.startswith("-l")]
    define_macros = [("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")]
    extra_compile = ["-std=c11", "-Wall", "-Wextra", "-fopenmp", "-D_GNU_SOURCE"]
    extra_link = ["-fopenmp"]
    runtime_dirs = []

    # OpenBLAS for the CPU GEMM; a plain C fallback is compiled otherwise.
    try:
        blas_cflags = subprocess.check_output(["pkg-config", "--cflags", "openblas"], text=True).split()
        blas_libs = subprocess.check_output(["pkg-config", "--libs", "openblas"], text=True).split()
        include_dirs += [f[2:] for f in blas_cflags if f.startswith("-I")]
        library_dirs += [f[2:] for f in blas_libs if f.startswith("-L")]
        libraries += [f[2:] for f in blas_libs if f.startswith("-l")]
        define_macros.append(("LYRA2_HAVE_CBLAS", "1"))
    except (OSError, subprocess.CalledProcessError):
        print("lyra2 build: OpenBLAS not found (apt-get install libopenblas-dev); using the plain C GEMM",
              file=sys.stderr)

    if os.environ.get("LYRA2_DEBUG") == "1" or os.environ.get("LYRA2_SANITIZE") == "1":
        extra_compile += ["-O0", "-g", "-fno-omit-frame-pointer"]
    else:
        extra_compile += ["-O3"]
    if os.environ.get("LYRA2_SANITIZE") == "1":
        extra_compile += ["-fsanitize=address,undefined"]
        extra_link += ["-fsanitize=address,undefined"]

    cuda = find_cuda()
    if emulation():
        define_macros += [("LYRA2_WITH_CUDA", "1"), ("LYRA2_CUDA_EMU", "1")]
        libraries += ["stdc++", "pthread"]
    if cuda:
        _, inc, libdirs, libs = cuda
        define_macros.append(("LYRA2_WITH_CUDA", "1"))
        include_dirs += inc
        library_dirs += libdirs
        runtime_dirs += [d for d in libdirs if os.path.isdir(d)]
        libraries += ["cudart_static", "rt", "dl", "pthread"] + libs + ["stdc++"]

    headers = glob.glob(os.path.join("csrc", "**", "*.h"), recursive=True)
    SHARED.update(sources=[s for s in sources if not s.startswith(GLUE_DIRS)], include_dirs=include_dirs,
                  define_macros=define_macros, extra_compile_args=extra_compile,
                  depends=[h for h in headers if not h.startswith(GLUE_DIRS)], cuda=cuda)

    def extension(name, glue):
        return Extension(name, sources=glue, include_dirs=include_dirs, library_dirs=library_dirs,
                         libraries=libraries, runtime_library_dirs=runtime_dirs, define_macros=define_macros,
                         extra_compile_args=extra_compile, extra_link_args=extra_link, depends=headers)

    python_glue = [s for s in sources if s.startswith(os.path.join("csrc", "python", ""))]
    testing_glue = [s for s in sources if s.startswith(os.path.join("csrc", "testing", ""))]
    # The glue helpers _testops shares are compiled into each: they use the NumPy API table and Lyra2Error of
    # the module they are in.
    common = [os.path.join("csrc", "python", f) for f in ("py_common.c", "py_weight_source.c")]
    return [extension("lyra2._core", python_glue), extension("lyra2._testops", testing_glue + common)]


if __name__ == "__main__":
    if sysconfig.get_platform().startswith("win"):
        raise SystemExit("lyra2 builds on Linux (and other POSIX systems with libav); Windows is not supported")
    setup(ext_modules=make_extensions(), cmdclass={"build_ext": BuildExt})
