"""Build of lyra2._core: the C core in csrc/, plus the CUDA backend (csrc/nn/cuda/*.cu)
when a CUDA toolkit is found.

Environment:
  LYRA2_CUDA=0|1      force the CUDA part off / on (default: on when nvcc and cuBLAS are found)
  LYRA2_CUDA_EMU=1    compile the CUDA backend's .cu files with the host C++ compiler against the CPU emulation
                      in csrc/nn/cuda/emu/ (no toolkit, no GPU): device="cuda" runs the real kernels thread by
                      thread on the CPU, for CI and debugging (slow; see README, developer section)
  LYRA2_CUDA_ARCH     nvcc -gencode list, default "arch=compute_90,code=sm_90" (H100/H200)
  LYRA2_SANITIZE=1    build with -fsanitize=address,undefined (see README, developer section)
  LYRA2_DEBUG=1       -O0 -g
"""
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
    if os.environ.get("LYRA2_CUDA_EMU") == "1":
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


def sanitize_flags():
    if os.environ.get("LYRA2_SANITIZE") == "1":
        return ["-O0", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
    if os.environ.get("LYRA2_DEBUG") == "1":
        return ["-O0", "-g", "-fno-omit-frame-pointer"]
    return ["-O2"]


def stale(obj, deps):
    return not os.path.exists(obj) or os.path.getmtime(obj) < max(os.path.getmtime(p) for p in deps)


class BuildExt(build_ext):
    """Compiles csrc/nn/cuda/*.cu with nvcc (or, for LYRA2_CUDA_EMU=1, the .cu files and the emulation in
    csrc/nn/cuda/emu/ with the host C++ compiler) into objects that are linked into _core."""

    def build_emulation(self, ext):
        cxx = os.environ.get("CXX", "g++")
        out = os.path.join(self.build_temp, "cuda_emu")
        os.makedirs(out, exist_ok=True)
        headers = glob.glob(os.path.join(CUDA_DIR, "*.h")) + glob.glob(os.path.join(CUDA_DIR, "emu", "*.h"))
        srcs = sorted(glob.glob(os.path.join(CUDA_DIR, "*.cu"))) + sorted(glob.glob(os.path.join(CUDA_DIR, "emu", "*.cpp")))
        objs = []
        for src in srcs:
            obj = os.path.join(out, os.path.basename(src) + ".o")
            if stale(obj, [src] + headers + glob.glob(os.path.join(ROOT, "csrc", "*.h"))):
                # -x c++: the .cu files are plain C++ against emu/cuda_emu.h. -ffp-contract=off: no FMA
                # contraction (documented in emu/emu_device.h); -fno-strict-aliasing: kernels pun registers.
                cmd = [cxx, "-x", "c++", "-std=c++17", "-c", src, "-o", obj, "-fPIC", "-Wall", "-Wextra",
                       "-Wno-unknown-pragmas", "-ffp-contract=off", "-fno-strict-aliasing",
                       "-DLYRA2_CUDA_EMU=1", "-DLYRA2_WITH_CUDA=1", "-I" + CUDA_DIR, "-I" + os.path.join(ROOT, "csrc")]
                cmd += sanitize_flags()
                print(" ".join(cmd))
                subprocess.check_call(cmd)
            objs.append(obj)
        self.add_objects(ext, objs)

    @staticmethod
    def add_objects(ext, objs):
        ext.extra_objects = list(ext.extra_objects or []) + objs
        # setuptools relinks only when a source or a dependency is newer than _core: the objects are dependencies
        ext.depends = list(ext.depends or []) + objs

    def build_extension(self, ext):
        cuda = getattr(ext, "_lyra_cuda", None)
        if os.environ.get("LYRA2_CUDA_EMU") == "1":
            self.build_emulation(ext)
        if cuda:
            nvcc, inc, _, _ = cuda
            arch = os.environ.get("LYRA2_CUDA_ARCH", "arch=compute_90,code=sm_90")
            objs = []
            os.makedirs(self.build_temp, exist_ok=True)
            for src in sorted(glob.glob(os.path.join(CUDA_DIR, "*.cu"))):
                obj = os.path.join(self.build_temp, os.path.basename(src) + ".o")
                if not os.path.exists(obj) or os.path.getmtime(obj) < max(
                        os.path.getmtime(p) for p in [src] + glob.glob(os.path.join(CUDA_DIR, "*.h"))):
                    cmd = [nvcc, "-c", src, "-o", obj, "-O3", "-std=c++17", "-Xcompiler", "-fPIC",
                           "-Xcompiler", "-Wall", "--expt-relaxed-constexpr", "-lineinfo",
                           "-I" + CUDA_DIR, "-I" + os.path.join(ROOT, "csrc")]
                    for a in arch.split(";"):
                        cmd += ["-gencode", a]
                    for d in inc:
                        cmd.append("-I" + d)
                    print(" ".join(cmd))
                    subprocess.check_call(cmd)
                objs.append(obj)
            self.add_objects(ext, objs)
        super().build_extension(ext)


def make_extension():
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
    if os.environ.get("LYRA2_CUDA_EMU") == "1":
        define_macros += [("LYRA2_WITH_CUDA", "1"), ("LYRA2_CUDA_EMU", "1")]
        libraries += ["stdc++", "pthread"]
    if cuda:
        _, inc, libdirs, libs = cuda
        define_macros.append(("LYRA2_WITH_CUDA", "1"))
        include_dirs += inc
        library_dirs += libdirs
        runtime_dirs += [d for d in libdirs if os.path.isdir(d)]
        libraries += ["cudart_static", "rt", "dl", "pthread"] + libs + ["stdc++"]

    ext = Extension(
        "lyra2._core",
        sources=sources,
        include_dirs=include_dirs,
        library_dirs=library_dirs,
        libraries=libraries,
        runtime_library_dirs=runtime_dirs,
        define_macros=define_macros,
        extra_compile_args=extra_compile,
        extra_link_args=extra_link,
        depends=glob.glob(os.path.join("csrc", "**", "*.h"), recursive=True),
    )
    ext._lyra_cuda = cuda
    return ext


if __name__ == "__main__":
    if sysconfig.get_platform().startswith("win"):
        raise SystemExit("lyra2 builds on Linux (and other POSIX systems with libav); Windows is not supported")
    setup(ext_modules=[make_extension()], cmdclass={"build_ext": BuildExt})
