"""The permutohedral lattice (Adams, Baek & Davis 2010) as three sparse matrices, NumPy or CuPy.

High-dimensional Gaussian filtering ``out_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j`` is approximated by
splatting every point onto the d+1 vertices of its enclosing simplex of the lattice, blurring along
each of the d+1 lattice axes with a [1/2, 1, 1/2] kernel, and slicing back with the same barycentric
weights. The three stages are linear maps, so we build them once per image as sparse matrices::

    out = alpha * S^T  B_d ... B_1 B_0  S  v        S: (M+1, N)  B_j: (M+1, M+1)

and each filtering is a handful of sparse-dense products, the same code with ``scipy.sparse`` on
the CPU and ``cupyx.scipy.sparse`` on the GPU. Row ``M`` is an always-zero "missing neighbour".

The construction follows pydensecrf's ``Permutohedral::init`` (SSE path) step by step: float32
elevation, round-half-even to the nearest 0-coloured point, ranks with the same tie order, the
same barycentric weights, the same blur order and the same ``alpha = 1 / (1 + 2^-d)``. Only the
hash table differs: lattice keys are packed into int64 and grouped by one sort.
"""

from __future__ import annotations

import numpy as np

from edgeseg.errors import InputError


def array_modules(x):
    """``(xp, sparse)`` for array ``x``: ``(numpy, scipy.sparse)`` or ``(cupy, cupyx.scipy.sparse)``."""
    if type(x).__module__.split(".")[0] == "cupy":
        import cupy
        import cupyx.scipy.sparse as cupy_sparse

        return cupy, cupy_sparse
    from edgeseg._deps import require

    return np, require("scipy.sparse", "the dense CRF on the CPU")


def _group(keys, xp):
    """Group equal int64 ``keys`` (n,) -> ``(unique sorted (u,), inverse (n,), first index (u,))``.

    One sort of ``key << b | index`` when that fits in 63 bits (a plain sort is much faster than an
    argsort), else an argsort.
    """
    n = int(keys.shape[0])
    lo = keys.min()
    keys = keys - lo
    index_bits = max(1, (n - 1).bit_length())
    if int(keys.max()).bit_length() + index_bits <= 62:
        packed = xp.sort((keys << index_bits) | xp.arange(n, dtype=xp.int64))
        sorted_keys = packed >> index_bits
        order = packed & ((1 << index_bits) - 1)
    else:
        order = xp.argsort(keys, kind="stable")
        sorted_keys = keys[order]
    new = xp.empty(n, dtype=bool)
    new[0] = True
    xp.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    group = xp.cumsum(new) - 1
    inverse = xp.empty(n, dtype=xp.int64)
    inverse[order] = group
    return sorted_keys[new] + lo, inverse, order[new]


def _strides(span) -> np.ndarray:
    """Mixed-radix strides for per-coordinate ``span`` (last coordinate fastest); raises if over 2^40."""
    if float(np.prod(np.asarray(span, dtype=np.float64))) >= 2.0**40:
        raise InputError(
            f"features: lattice extent {list(span)} is too large to index; "
            "expected moderate feature ranges (increase the kernel widths sxy/srgb)"
        )
    strides = np.ones(len(span), dtype=np.int64)
    for i in range(len(span) - 2, -1, -1):
        strides[i] = strides[i + 1] * int(span[i + 1])
    return strides


class Lattice:
    """Permutohedral lattice of ``features`` (N, d) float32 (already divided by the kernel widths).

    Attributes: ``offset`` (N, d+1) vertex index per point, ``weight`` (N, d+1) barycentric weights,
    ``num_vertices`` M, ``splat`` (M+1, N), ``blur`` list of d+1 (M+1, M+1), ``alpha``.
    ``filter(values (N, C)) -> (N, C)`` applies the unnormalised Gaussian filter (self weight included).
    """

    def __init__(self, features):
        xp, sparse = array_modules(features)
        self.xp, self.sparse = xp, sparse
        features = xp.ascontiguousarray(features, dtype=xp.float32)
        n, d = features.shape
        self.n, self.d = n, d
        self.alpha = np.float32(1.0 / (1.0 + 2.0 ** (-d)))
        elevated = _elevate(features, xp)
        coarse, rank = _enclosing_simplex(elevated, xp)
        self.weight = _barycentric(elevated, coarse, rank, xp)
        self.offset, keys, self.num_vertices = _vertices(coarse, rank, xp)
        self._build_matrices(keys)

    def _build_matrices(self, keys) -> None:
        xp, n, d, m = self.xp, self.n, self.d, self.num_vertices
        self.indptr = xp.arange(0, n * (d + 1) + 1, d + 1, dtype=xp.int32)
        self.indices = self.offset.ravel().astype(xp.int32)
        self.splat = self.splat_matrix()
        self.blur = _blur_matrices(keys, d, m, xp, self.sparse)

    def splat_matrix(self, column_scale=None):
        """S (M+1, N): point i adds ``weight[i, r] * column_scale[i]`` to its vertex ``offset[i, r]``."""
        data = self.weight if column_scale is None else self.weight * column_scale[:, None]
        # The CSC form of S shares S^T's CSR arrays: no transpose or sort needed.
        splat = self.sparse.csc_matrix((data.ravel(), self.indices, self.indptr), shape=(self.num_vertices + 1, self.n))
        return splat if self.xp is np else splat.tocsr()

    def slice_matrix(self, row_scale=None):
        """alpha S^T (N, M+1), rows scaled by ``row_scale`` (N,)."""
        scale = self.alpha if row_scale is None else (row_scale * self.alpha).astype(self.xp.float32)[:, None]
        return self.sparse.csr_matrix(
            ((self.weight * scale).ravel(), self.indices, self.indptr), shape=(self.n, self.num_vertices + 1)
        )

    def filter(self, values):
        """Gaussian-filter ``values`` (N,) or (N, C) float32 -> same shape (pydensecrf's ``compute``)."""
        lattice_values = self.splat @ values
        for blur in self.blur:
            lattice_values = blur @ lattice_values
        return self.slice_matrix() @ lattice_values


def _elevate(features, xp):
    """Project (N, d) features onto the plane sum(x) = 0 of R^{d+1}, scaled (Adams et al. p.5) -> (d+1, N)."""
    n, d = features.shape
    columns = xp.ascontiguousarray(features.T)
    inv_std_dev = np.sqrt(2.0 / 3.0) * (d + 1)
    elevated = xp.empty((d + 1, n), dtype=xp.float32)
    running = xp.zeros(n, dtype=xp.float32)
    for j in range(d, 0, -1):
        scale = np.float32(1.0 / np.sqrt((j + 1) * j) * inv_std_dev)
        cf = columns[j - 1] * scale
        xp.subtract(running, np.float32(j) * cf, out=elevated[j])
        running += cf
    elevated[0] = running
    return elevated


def _enclosing_simplex(elevated, xp):
    """Nearest 0-coloured point ``coarse * (d+1)`` (int32) and coordinate ranks (int8), both (d+1, N)."""
    d = elevated.shape[0] - 1
    rounded = xp.rint(elevated * np.float32(1.0 / (d + 1)))  # round half to even, as SSE's cvtps
    total = rounded.sum(axis=0, dtype=xp.float32).astype(xp.int8)
    diff = elevated - rounded * np.float32(d + 1)
    rank = xp.zeros(elevated.shape, dtype=xp.int8)
    for i in range(d):  # rank = number of larger coordinates, ties to the lower index (pydensecrf)
        for j in range(i + 1, d + 1):
            less = diff[i] < diff[j]
            rank[i] += less
            rank[j] += ~less
    rank += total
    shift = (rank < 0).view(xp.int8) - (rank > d).view(xp.int8)
    rank += shift * np.int8(d + 1)
    coarse = rounded.astype(xp.int32) + shift
    return coarse, rank


def _barycentric(elevated, coarse, rank, xp):
    """Barycentric weights (N, d+1) float32 of each point in its simplex (vertex r has rank d-r).

    ``v = (elevated - rem0) / (d+1)`` sorted ascending gives ``b_k = v_(k) - v_(k-1)`` and
    ``b_0 = v_(0) + (1 - v_(d))`` (pydensecrf's scatter, in its float order).
    """
    d1, n = elevated.shape
    d = d1 - 1
    v = (elevated - coarse.astype(xp.float32) * np.float32(d + 1)) * np.float32(1.0 / (d + 1))
    for end in range(d, 0, -1):  # bubble-sort network over the d+1 rows (ties hold equal values)
        for i in range(end):
            low = xp.minimum(v[i], v[i + 1])
            xp.maximum(v[i], v[i + 1], out=v[i + 1])
            v[i] = low
    bary = xp.empty((d + 1, n), dtype=xp.float32)
    xp.subtract(v[1:], v[:-1], out=bary[1:])
    bary[0] = v[0] + (np.float32(1.0) - v[d])
    return xp.ascontiguousarray(bary.T)


def _vertices(coarse, rank, xp):
    """Lattice vertex index (N, d+1) per (point, remainder), the sorted vertex codes, and M.

    Vertex ``r`` of a simplex has key ``(d+1) c + r`` with ``c_i = coarse_i - [rank_i > d - r]``; we
    code it as ``r + (d+1) * base(c)`` (mixed radix, with a margin of 2 cells for neighbours). Points
    in the same simplex share their vertices, so simplices are grouped first (one int64 per point)
    and only the vertices of distinct simplices are generated and grouped.
    """
    d1, n = coarse.shape
    d = d1 - 1
    lows = [int(coarse[i].min()) - 2 for i in range(d)]
    strides = _strides([int(coarse[i].max()) - lows[i] + 2 for i in range(d)])
    base = xp.zeros(n, dtype=xp.int64)
    rank_code = xp.zeros(n, dtype=xp.int64)
    for i in range(d):
        base += (coarse[i] - lows[i]).astype(xp.int64) * int(strides[i])
        rank_code *= d + 1
        rank_code += rank[i]
    _, simplex_of_point, first = _group(base * (d + 1) ** d + rank_code, xp)
    s_base, s_rank = base[first], rank[:d, first]  # (S,), (d, S)
    codes = xp.empty((s_base.shape[0], d + 1), dtype=xp.int64)
    for r in range(d + 1):
        c_base = s_base.copy()
        for i in range(d):
            c_base -= (s_rank[i] > d - r).astype(xp.int64) * int(strides[i])
        codes[:, r] = c_base * (d + 1) + r
    unique_codes, vertex_of_key, _ = _group(codes.ravel(), xp)
    offset = vertex_of_key.reshape(-1, d + 1)[simplex_of_point]  # (N, d+1)
    return offset, (unique_codes, strides), int(unique_codes.shape[0])


def _neighbour_deltas(codes, strides, d, axis, xp):
    """Code differences to the two neighbours along lattice ``axis``: keys ``k -+ 1 +- (d+1) e_axis``."""
    r = codes % (d + 1)
    unit = int(strides[axis]) if axis < d else 0
    all_cells = int(strides.sum())
    # key - 1: remainder r-1, or remainder d of the cell one lower on every coordinate when r = 0
    down = xp.where(r > 0, -1, d - (d + 1) * all_cells) + (d + 1) * unit
    up = xp.where(r < d, 1, -d + (d + 1) * all_cells) - (d + 1) * unit
    return down, up


def _blur_matrices(keys, d, m, xp, sparse):
    """One (M+1, M+1) CSR per lattice axis: ``v_i + (v_n1 + v_n2) / 2``, missing neighbours -> row M."""
    codes, strides = keys
    matrices = []
    indptr = xp.arange(0, 3 * (m + 1) + 1, 3, dtype=xp.int32)
    data = xp.tile(xp.asarray([1.0, 0.5, 0.5], dtype=xp.float32), m + 1)
    data[3 * m:] = 0.0
    for axis in range(d + 1):
        columns = [xp.arange(m, dtype=xp.int64)]
        for delta in _neighbour_deltas(codes, strides, d, axis, xp):
            target = codes + delta
            pos = xp.minimum(xp.searchsorted(codes, target), m - 1)
            columns.append(xp.where(codes[pos] == target, pos, m))
        indices = xp.stack(columns, axis=1).ravel()
        indices = xp.concatenate([indices, xp.full(3, m, dtype=xp.int64)]).astype(xp.int32)
        matrices.append(sparse.csr_matrix((data, indices, indptr), shape=(m + 1, m + 1)))
    return matrices
