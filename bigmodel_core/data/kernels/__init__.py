"""Compiled loops (numba) over the UTF-8 bytes of a text column, where no library does the job and the benchmark
shows a clear gain (each says its figure); import from the defining module. Arithmetic is uint64 modulo 2^64 (casts
keep numba from float64); compiled code is cached on disk (cache=True): the first call after an install compiles."""
