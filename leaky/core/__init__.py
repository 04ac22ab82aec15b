"""Infrastructure every layer uses: the array backend, the errors, BLAS and Numba threads,
option checks and RNG state. Imports the kernels and NumPy only.

Layer rules: docs/layout.md."""
