/// The one matrix-multiply entry point every layer uses:
/// `C[i, j] = (accumulate ? C[i, j] : 0) + Σ_{p = 0..<k} A[i, p] · B[p, j]`.
///
/// Determinism (docs/architecture.md §2.3): every element of C is one chain of fused multiply-adds
/// over p = 0, 1, …, k−1 in that order, started from C[i, j] or +0. Blocking over rows and columns
/// and the vector width decide only which elements are computed together, never the order within an
/// element, so the bits do not depend on the shapes around it, on the CPU's vector width, or on how
/// the caller splits the work.
///
/// A is addressed with arbitrary strides (so a transposed A costs nothing):
/// `A[i, p] = a[rowStart(i) + columnOffset(p)]`, row i starting at `i·aRowStride` or at
/// `aRowOffsets[i]`, column p at `p·aColStride` or at `aColOffsets[p]` (so that a convolution
/// reads its im2col matrix straight from the input). B's rows must be contiguous:
/// `B[p, j] = b[p·ldb + j]` (callers transpose B into a workspace when needed), and the last
/// column block may read past the end of a row, never past B's last element.
public func gemm(m: Int, n: Int, k: Int,
                 a: UnsafePointer<Float>, aRowStride: Int, aColStride: Int, aRowOffsets: UnsafePointer<Int>? = nil,
                 aColOffsets: UnsafePointer<Int>? = nil,
                 b: UnsafePointer<Float>, ldb: Int,
                 c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    let rows = MatrixRows(base: a, stride: aRowStride, offsets: aRowOffsets)
    let rowsOfB = StridedRows(base: b, stride: ldb)
    if let aColOffsets {
        gemmBlocks(m: m, n: n, k: k, a: rows, aColumns: OffsetColumns(offsets: aColOffsets), b: rowsOfB,
                   c: c, ldc: ldc, accumulate: accumulate)
    } else {
        gemmBlocks(m: m, n: n, k: k, a: rows, aColumns: StridedColumns(stride: aColStride), b: rowsOfB,
                   c: c, ldc: ldc, accumulate: accumulate)
    }
}

@inline(__always)
private func gemmBlocks<A: ColumnSource>(m: Int, n: Int, k: Int, a: MatrixRows, aColumns: A, b: StridedRows,
                                      c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    var j = 0
    // Blocks of 32 columns, the last of them possibly 17…31 wide in the 8-row kernel.
    while j + 32 <= n || (n - j > 16 && m >= 8) {
        let columns = min(32, n - j)
        let fullRows = b.fullRows(j: j, width: 32, n: n, k: k)
        var i = 0
        while i + 8 <= m {
            if columns == 32 {
                kernel8x32(FullBlock.self, k: k, fullRows: k, columns: 32, a: a, row: i, aColumns: aColumns,
                           b: b.shifted(j), c: c + i * ldc + j, ldc: ldc, accumulate: accumulate)
            } else {
                kernel8x32(PartialBlock.self, k: k, fullRows: fullRows, columns: columns, a: a, row: i,
                           aColumns: aColumns, b: b.shifted(j), c: c + i * ldc + j, ldc: ldc,
                           accumulate: accumulate)
            }
            i += 8
        }
        if columns < 32 {
            // The remaining rows take this block 16 columns at a time, below.
            gemmColumns16(from: j, m: m, n: n, k: k, firstRow: i, a: a, aColumns: aColumns, b: b,
                          c: c, ldc: ldc, accumulate: accumulate)
            return
        }
        while i + 4 <= m {
            kernel4x32(k: k, a: a, row: i, aColumns: aColumns,
                       b: b.shifted(j), c: c + i * ldc + j, ldc: ldc, accumulate: accumulate)
            i += 4
        }
        while i < m {
            kernel1x32(k: k, a: a[i], aColumns: aColumns,
                       b: b.shifted(j), c: c + i * ldc + j, accumulate: accumulate)
            i += 1
        }
        j += 32
    }
    gemmColumns16(from: j, m: m, n: n, k: k, firstRow: 0, a: a, aColumns: aColumns, b: b,
                  c: c, ldc: ldc, accumulate: accumulate)
}

/// Where column p of A lies within a row of A; a compile-time choice, so that the strided
/// kernels carry no table.
protocol ColumnSource {
    func offset(_ p: Int) -> Int
}

struct StridedColumns: ColumnSource {
    let stride: Int
    @inline(__always) func offset(_ p: Int) -> Int { p * stride }
}

struct OffsetColumns: ColumnSource {
    let offsets: UnsafePointer<Int>
    @inline(__always) func offset(_ p: Int) -> Int { offsets[p] }
}

/// The rows of B, `stride` apart.
struct StridedRows {
    let base: UnsafePointer<Float>
    let stride: Int
    @inline(__always) func row(_ p: Int) -> UnsafePointer<Float> { base + p * stride }
    @inline(__always) func shifted(_ j: Int) -> StridedRows { StridedRows(base: base + j, stride: stride) }
    /// Not past B's last element, at (k − 1)·stride + n − 1.
    @inline(__always) func fullRows(j: Int, width: Int, n: Int, k: Int) -> Int {
        let excess = j + width - n
        return excess <= 0 ? k : max(0, k - (excess + stride - 1) / stride)
    }
}

/// Columns j… of rows firstRow… of C, 16 at a time; a block of fewer than 16 computes garbage
/// in its spare lanes and stores only the valid ones. Each valid lane is still its element's
/// own chain.
@inline(__always)
private func gemmColumns16<A: ColumnSource>(from start: Int, m: Int, n: Int, k: Int, firstRow: Int, a: MatrixRows,
                                         aColumns: A, b: StridedRows, c: UnsafeMutablePointer<Float>, ldc: Int,
                                         accumulate: Bool) {
    var j = start
    while j < n {
        let columns = min(16, n - j)
        let fullRows = b.fullRows(j: j, width: 16, n: n, k: k)
        var i = firstRow
        while i + 8 <= m {
            kernel8x16(k: k, fullRows: fullRows, columns: columns, a: a, row: i,
                       aColumns: aColumns, b: b.shifted(j), c: c + i * ldc + j, ldc: ldc, accumulate: accumulate)
            i += 8
        }
        while i < m {
            kernel1x16(k: k, fullRows: fullRows, columns: columns, a: a[i], aColumns: aColumns,
                       b: b.shifted(j), c: c + i * ldc + j, accumulate: accumulate)
            i += 1
        }
        j += 16
    }
}

protocol ColumnBlock { static var partial: Bool { get } }
enum FullBlock: ColumnBlock { static var partial: Bool { false } }
enum PartialBlock: ColumnBlock { static var partial: Bool { true } }

/// Where the rows of A start: `stride` apart, or at the given offsets.
struct MatrixRows {
    let base: UnsafePointer<Float>
    let stride: Int
    let offsets: UnsafePointer<Int>?

    @inline(__always) subscript(_ i: Int) -> UnsafePointer<Float> {
        if let offsets { return base + offsets[i] }
        return base + i * stride
    }
}

/// The first `count` floats at `p` in lanes 0..<count, zeros after.
@inline(__always) func loadPartial(_ p: UnsafePointer<Float>, count: Int) -> Vec16 {
    if count == 16 { return load16(p) }
    var v = Vec16()
    for t in 0..<count { v[t] = p[t] }
    return v
}

@inline(__always) func storePartial(_ v: Vec16, _ p: UnsafeMutablePointer<Float>, count: Int) {
    if count == 16 { return store16(v, p) }
    for t in 0..<count { p[t] = v[t] }
}

/// 8 rows × 32 columns: 16 accumulators of 16 lanes, the register file of AVX-512. With
/// `columns` < 32 (a last block of 17…31), the second half's spare lanes compute garbage and
/// are not stored; rows of B from `fullRows` on load that half lane by lane.
/// `Block` says at compile time whether the block may be partial, so that the full kernel
/// carries no lane-by-lane code.
@inline(__always)
private func kernel8x32<Block: ColumnBlock, A: ColumnSource>(_ block: Block.Type, k: Int, fullRows: Int, columns: Int,
                                                          a: MatrixRows, row: Int, aColumns: A, b: StridedRows,
                                                          c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    let second = Block.partial ? columns - 16 : 16
    let fullRows = Block.partial ? fullRows : k
    var c00 = Vec16(), c01 = Vec16(), c10 = Vec16(), c11 = Vec16()
    var c20 = Vec16(), c21 = Vec16(), c30 = Vec16(), c31 = Vec16()
    var c40 = Vec16(), c41 = Vec16(), c50 = Vec16(), c51 = Vec16()
    var c60 = Vec16(), c61 = Vec16(), c70 = Vec16(), c71 = Vec16()
    if accumulate {
        c00 = load16(c); c01 = loadPartial(c + 16, count: second)
        c10 = load16(c + ldc); c11 = loadPartial(c + ldc + 16, count: second)
        c20 = load16(c + 2 * ldc); c21 = loadPartial(c + 2 * ldc + 16, count: second)
        c30 = load16(c + 3 * ldc); c31 = loadPartial(c + 3 * ldc + 16, count: second)
        c40 = load16(c + 4 * ldc); c41 = loadPartial(c + 4 * ldc + 16, count: second)
        c50 = load16(c + 5 * ldc); c51 = loadPartial(c + 5 * ldc + 16, count: second)
        c60 = load16(c + 6 * ldc); c61 = loadPartial(c + 6 * ldc + 16, count: second)
        c70 = load16(c + 7 * ldc); c71 = loadPartial(c + 7 * ldc + 16, count: second)
    }
    let a0 = a[row], a1 = a[row + 1], a2 = a[row + 2], a3 = a[row + 3]
    let a4 = a[row + 4], a5 = a[row + 5], a6 = a[row + 6], a7 = a[row + 7]
    @inline(__always) func step(_ off: Int, _ b0: Vec16, _ b1: Vec16) {
        var x = Vec16(repeating: a0[off])
        c00 = c00.addingProduct(x, b0); c01 = c01.addingProduct(x, b1)
        x = Vec16(repeating: a1[off])
        c10 = c10.addingProduct(x, b0); c11 = c11.addingProduct(x, b1)
        x = Vec16(repeating: a2[off])
        c20 = c20.addingProduct(x, b0); c21 = c21.addingProduct(x, b1)
        x = Vec16(repeating: a3[off])
        c30 = c30.addingProduct(x, b0); c31 = c31.addingProduct(x, b1)
        x = Vec16(repeating: a4[off])
        c40 = c40.addingProduct(x, b0); c41 = c41.addingProduct(x, b1)
        x = Vec16(repeating: a5[off])
        c50 = c50.addingProduct(x, b0); c51 = c51.addingProduct(x, b1)
        x = Vec16(repeating: a6[off])
        c60 = c60.addingProduct(x, b0); c61 = c61.addingProduct(x, b1)
        x = Vec16(repeating: a7[off])
        c70 = c70.addingProduct(x, b0); c71 = c71.addingProduct(x, b1)
    }
    for p in 0..<fullRows {
        let bRow = b.row(p)
        step(aColumns.offset(p), load16(bRow), load16(bRow + 16))
    }
    if Block.partial {
        for p in fullRows..<k {
            let bRow = b.row(p)
            step(aColumns.offset(p), load16(bRow), loadPartial(bRow + 16, count: second))
        }
    }
    store16(c00, c); storePartial(c01, c + 16, count: second)
    store16(c10, c + ldc); storePartial(c11, c + ldc + 16, count: second)
    store16(c20, c + 2 * ldc); storePartial(c21, c + 2 * ldc + 16, count: second)
    store16(c30, c + 3 * ldc); storePartial(c31, c + 3 * ldc + 16, count: second)
    store16(c40, c + 4 * ldc); storePartial(c41, c + 4 * ldc + 16, count: second)
    store16(c50, c + 5 * ldc); storePartial(c51, c + 5 * ldc + 16, count: second)
    store16(c60, c + 6 * ldc); storePartial(c61, c + 6 * ldc + 16, count: second)
    store16(c70, c + 7 * ldc); storePartial(c71, c + 7 * ldc + 16, count: second)
}

@inline(__always)
private func kernel4x32<A: ColumnSource>(k: Int, a: MatrixRows, row: Int, aColumns: A, b: StridedRows,
                        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    var c00 = Vec16(), c01 = Vec16(), c10 = Vec16(), c11 = Vec16()
    var c20 = Vec16(), c21 = Vec16(), c30 = Vec16(), c31 = Vec16()
    if accumulate {
        c00 = load16(c); c01 = load16(c + 16)
        c10 = load16(c + ldc); c11 = load16(c + ldc + 16)
        c20 = load16(c + 2 * ldc); c21 = load16(c + 2 * ldc + 16)
        c30 = load16(c + 3 * ldc); c31 = load16(c + 3 * ldc + 16)
    }
    let a0 = a[row], a1 = a[row + 1], a2 = a[row + 2], a3 = a[row + 3]
    for p in 0..<k {
        let bRow = b.row(p)
        let b0 = load16(bRow), b1 = load16(bRow + 16)
        let off = aColumns.offset(p)
        let x0 = Vec16(repeating: a0[off]), x1 = Vec16(repeating: a1[off])
        let x2 = Vec16(repeating: a2[off]), x3 = Vec16(repeating: a3[off])
        c00 = c00.addingProduct(x0, b0); c01 = c01.addingProduct(x0, b1)
        c10 = c10.addingProduct(x1, b0); c11 = c11.addingProduct(x1, b1)
        c20 = c20.addingProduct(x2, b0); c21 = c21.addingProduct(x2, b1)
        c30 = c30.addingProduct(x3, b0); c31 = c31.addingProduct(x3, b1)
    }
    store16(c00, c); store16(c01, c + 16)
    store16(c10, c + ldc); store16(c11, c + ldc + 16)
    store16(c20, c + 2 * ldc); store16(c21, c + 2 * ldc + 16)
    store16(c30, c + 3 * ldc); store16(c31, c + 3 * ldc + 16)
}

@inline(__always)
private func kernel1x32<A: ColumnSource>(k: Int, a: UnsafePointer<Float>, aColumns: A, b: StridedRows,
                        c: UnsafeMutablePointer<Float>, accumulate: Bool) {
    var c0 = accumulate ? load16(c) : Vec16()
    var c1 = accumulate ? load16(c + 16) : Vec16()
    for p in 0..<k {
        let x = Vec16(repeating: a[aColumns.offset(p)])
        c0 = c0.addingProduct(x, load16(b.row(p)))
        c1 = c1.addingProduct(x, load16(b.row(p) + 16))
    }
    store16(c0, c); store16(c1, c + 16)
}

/// Up to 16 columns of one row; rows of B from `fullRows` on are loaded lane by lane.
@inline(__always)
private func kernel1x16<A: ColumnSource>(k: Int, fullRows: Int, columns: Int, a: UnsafePointer<Float>, aColumns: A,
                                      b: StridedRows,
                        c: UnsafeMutablePointer<Float>, accumulate: Bool) {
    var c0 = accumulate ? loadPartial(c, count: columns) : Vec16()
    for p in 0..<fullRows {
        c0 = c0.addingProduct(Vec16(repeating: a[aColumns.offset(p)]), load16(b.row(p)))
    }
    for p in fullRows..<k {
        c0 = c0.addingProduct(Vec16(repeating: a[aColumns.offset(p)]), loadPartial(b.row(p), count: columns))
    }
    storePartial(c0, c, count: columns)
}

/// 8 rows × up to 16 columns (see `kernel1x16`).
@inline(__always)
private func kernel8x16<A: ColumnSource>(k: Int, fullRows: Int, columns: Int, a: MatrixRows, row: Int,
                                      aColumns: A, b: StridedRows,
                        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    var acc = (Vec16(), Vec16(), Vec16(), Vec16(), Vec16(), Vec16(), Vec16(), Vec16())
    if accumulate {
        acc = (loadPartial(c, count: columns), loadPartial(c + ldc, count: columns),
               loadPartial(c + 2 * ldc, count: columns), loadPartial(c + 3 * ldc, count: columns),
               loadPartial(c + 4 * ldc, count: columns), loadPartial(c + 5 * ldc, count: columns),
               loadPartial(c + 6 * ldc, count: columns), loadPartial(c + 7 * ldc, count: columns))
    }
    let a0 = a[row], a1 = a[row + 1], a2 = a[row + 2], a3 = a[row + 3]
    let a4 = a[row + 4], a5 = a[row + 5], a6 = a[row + 6], a7 = a[row + 7]
    @inline(__always) func step(_ p: Int, _ bv: Vec16) {
        let off = aColumns.offset(p)
        acc.0 = acc.0.addingProduct(Vec16(repeating: a0[off]), bv)
        acc.1 = acc.1.addingProduct(Vec16(repeating: a1[off]), bv)
        acc.2 = acc.2.addingProduct(Vec16(repeating: a2[off]), bv)
        acc.3 = acc.3.addingProduct(Vec16(repeating: a3[off]), bv)
        acc.4 = acc.4.addingProduct(Vec16(repeating: a4[off]), bv)
        acc.5 = acc.5.addingProduct(Vec16(repeating: a5[off]), bv)
        acc.6 = acc.6.addingProduct(Vec16(repeating: a6[off]), bv)
        acc.7 = acc.7.addingProduct(Vec16(repeating: a7[off]), bv)
    }
    for p in 0..<fullRows { step(p, load16(b.row(p))) }
    for p in fullRows..<k { step(p, loadPartial(b.row(p), count: columns)) }
    storePartial(acc.0, c, count: columns); storePartial(acc.1, c + ldc, count: columns)
    storePartial(acc.2, c + 2 * ldc, count: columns); storePartial(acc.3, c + 3 * ldc, count: columns)
    storePartial(acc.4, c + 4 * ldc, count: columns); storePartial(acc.5, c + 5 * ldc, count: columns)
    storePartial(acc.6, c + 6 * ldc, count: columns); storePartial(acc.7, c + 7 * ldc, count: columns)
}
