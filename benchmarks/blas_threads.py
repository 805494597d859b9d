"""BLAS thread control shared by the benchmarks, so minimenet and PyTorch run on equal threads."""
import os

_LIMITER = None


def limit_blas(n):
    """Set NumPy's BLAS threads (needs threadpoolctl)."""
    global _LIMITER
    import threadpoolctl
    _LIMITER = threadpoolctl.threadpool_limits(limits=n, user_api="blas")


def blas_threads():
    """Threads NumPy's BLAS uses and its name, with the kernels OpenBLAS runs (threadpoolctl if
    present, else the usual environment variables). Some machines set OPENBLAS_CORETYPE to pin
    older kernels (the development machines pin Haswell's AVX2 ones on AVX-512 CPUs, where PyTorch
    still uses AVX-512): the name says so, since the products then run at 55-75 % of the speed
    (benchmarks/README.md)."""
    try:
        import threadpoolctl
        info = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
        if info:
            kernels = info[0].get("architecture")
            forced = f", forced by OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']}" if "OPENBLAS_CORETYPE" in os.environ else ""
            return int(info[0]["num_threads"]), (f"{info[0].get('internal_api')} {info[0].get('version')}"
                                                 + (f" ({kernels} kernels{forced})" if kernels else ""))
    except ImportError:
        pass
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            return int(os.environ[var]), f"(from {var})"
    return os.cpu_count() or 1, "(assumed: one per CPU)"
