/// Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray, 2015): a 3×3, stride-1
/// convolution computed on 4×4 input tiles, each giving a 2×2 output tile. In the transformed
/// domain a tile costs 16 multiply-adds per (input, output) channel pair instead of 36, and
/// the 16 products of a tile are 16 independent matrix products over the input channels,
/// each through `gemm`.
///
/// Determinism (docs/architecture.md §2.3): every transform is a fixed sequence of vector adds,
/// subtracts and halvings written out here, lane by lane the same on AVX2 and AVX-512, and each
/// transformed output is `gemm`'s fixed-order chain over the input channels. So an output is a
/// function of its sample and the weights alone, as with the direct product; only its rounding
/// differs.
///
/// Tensors are channels-last (`[H·W, channels]`) so that every transform works on whole
/// vectors of 16 channels.
enum Winograd {
    /// Transform points of a tile: the 4×4 transformed tile, row-major.
    static let points = 16

    /// Whether a convolution of this shape is computed this way: 3×3, stride 1, and both channel
    /// counts multiples of 16, as the transforms load and store whole vectors of 16 channels.
    static func applies(kernel: Int, stride: Int, inChannels: Int, outChannels: Int) -> Bool {
        kernel == 3 && stride == 1 && inChannels % 16 == 0 && outChannels % 16 == 0
    }

    /// V[p, i, o] = (G·g·Gᵀ)[p] for the 3×3 kernel g of output channel o and input channel i,
    /// g[ky, kx] = weight[o·outStride + i·inStride + ky·3 + kx], or rotated by 180° when
    /// `flipped` (the kernel of the input gradient).
    static func transformWeights(_ weight: UnsafePointer<Float>, outChannels: Int, inChannels: Int,
                                 outStride: Int, inStride: Int, flipped: Bool,
                                 into v: UnsafeMutablePointer<Float>) {
        for i in 0..<inChannels {
            for o0 in stride(from: 0, to: outChannels, by: 16) {
                // The 9 taps of 16 output channels, one vector per tap.
                @inline(__always) func g(_ ky: Int, _ kx: Int) -> Vec16 {
                    let tap = flipped ? 8 - (ky * 3 + kx) : ky * 3 + kx
                    var lanes = Vec16()
                    for lane in 0..<16 { lanes[lane] = weight[(o0 + lane) * outStride + i * inStride + tap] }
                    return lanes
                }
                let rows = (kernelTransform(g(0, 0), g(0, 1), g(0, 2)), kernelTransform(g(1, 0), g(1, 1), g(1, 2)),
                            kernelTransform(g(2, 0), g(2, 1), g(2, 2)))
                @inline(__always) func store(column j: Int, _ t: (Vec16, Vec16, Vec16, Vec16)) {
                    storeColumn(j, t, v + i * outChannels + o0, pointStride: inChannels * outChannels)
                }
                store(column: 0, kernelTransform(rows.0.0, rows.1.0, rows.2.0))
                store(column: 1, kernelTransform(rows.0.1, rows.1.1, rows.2.1))
                store(column: 2, kernelTransform(rows.0.2, rows.1.2, rows.2.2))
                store(column: 3, kernelTransform(rows.0.3, rows.1.3, rows.2.3))
            }
        }
    }

    /// The 2×2 output tiles of a 3×3 convolution of an H×W input zero-padded by `padding`.
    struct TileGrid {
        let outHeight, outWidth, rows, columns: Int
        var count: Int { rows * columns }

        init(height: Int, width: Int, padding: Int) {
            outHeight = height + 2 * padding - 2
            outWidth = width + 2 * padding - 2
            rows = (outHeight + 1) / 2
            columns = (outWidth + 1) / 2
        }
    }

    /// out[oy·Wo + ox, o] = (bias[o] or 0) + the 3×3 convolution of `input` (`[H·W, inChannels]`,
    /// zero-padded by `padding` on every side) with the kernels transformed into `v`, for the
    /// (H + 2·padding − 2) × (W + 2·padding − 2) outputs. Uses the workspace's Winograd tiles.
    static func convolve(_ input: UnsafePointer<Float>, height: Int, width: Int, inChannels: Int, padding: Int,
                         weights v: UnsafePointer<Float>, outChannels: Int, bias: UnsafePointer<Float>?,
                         into out: UnsafeMutablePointer<Float>, workspace: Workspace) {
        let grid = TileGrid(height: height, width: width, padding: padding)
        let u = transformedInput(input, height: height, width: width, channels: inChannels, padding: padding,
                                 grid: grid, workspace: workspace)
        let m = workspace.floats(.winogradOutputTiles, count: points * grid.count * outChannels)

        // M[p] = U[p] · V[p]: each element one fixed-order chain over the input channels.
        for p in 0..<points {
            gemm(m: grid.count, n: outChannels, k: inChannels,
                 a: u + p * grid.count * inChannels, aRowStride: inChannels, aColStride: 1,
                 b: v + p * inChannels * outChannels, ldb: outChannels,
                 c: m + p * grid.count * outChannels, ldc: outChannels, accumulate: false)
        }

        // out = Aᵀ·M·A (+ bias) per tile, the outputs past the edge dropped.
        for ty in 0..<grid.rows {
            for tx in 0..<grid.columns {
                let tile = ty * grid.columns + tx
                let oy = 2 * ty, ox = 2 * tx
                let lastRow = min(2, grid.outHeight - oy), lastColumn = min(2, grid.outWidth - ox)
                for o0 in stride(from: 0, to: outChannels, by: 16) {
                    @inline(__always) func product(_ p: Int) -> Vec16 {
                        load16(m + (p * grid.count + tile) * outChannels + o0)
                    }
                    let rows = (outputTransform(product(0), product(1), product(2), product(3)),
                                outputTransform(product(4), product(5), product(6), product(7)),
                                outputTransform(product(8), product(9), product(10), product(11)),
                                outputTransform(product(12), product(13), product(14), product(15)))
                    let columns = (outputTransform(rows.0.0, rows.1.0, rows.2.0, rows.3.0),
                                   outputTransform(rows.0.1, rows.1.1, rows.2.1, rows.3.1))
                    let offset = bias.map { load16($0 + o0) } ?? Vec16()
                    let tileOut = ((columns.0.0, columns.1.0), (columns.0.1, columns.1.1))
                    for dy in 0..<lastRow {
                        let row = dy == 0 ? tileOut.0 : tileOut.1
                        for dx in 0..<lastColumn {
                            store16((dx == 0 ? row.0 : row.1) + offset,
                                    out + ((oy + dy) * grid.outWidth + ox + dx) * outChannels + o0)
                        }
                    }
                }
            }
        }
    }

    /// U[p, tile, c] = (Bᵀ·d·B)[p] for each tile's 4×4 input d (zero outside the image), from
    /// the input `[H·W, channels]`, in the workspace's `.winogradInputTiles`.
    private static func transformedInput(_ input: UnsafePointer<Float>, height: Int, width: Int, channels: Int,
                                         padding: Int, grid: TileGrid, workspace: Workspace) -> UnsafeMutablePointer<Float> {
        let u = workspace.floats(.winogradInputTiles, count: points * grid.count * channels)
        for ty in 0..<grid.rows {
            for tx in 0..<grid.columns {
                let tile = ty * grid.columns + tx
                for c0 in stride(from: 0, to: channels, by: 16) {
                    @inline(__always) func d(_ i: Int, _ j: Int) -> Vec16 {
                        let iy = 2 * ty + i - padding, ix = 2 * tx + j - padding
                        guard iy >= 0, iy < height, ix >= 0, ix < width else { return Vec16() }
                        return load16(input + (iy * width + ix) * channels + c0)
                    }
                    let rows = (inputTransform(d(0, 0), d(0, 1), d(0, 2), d(0, 3)),
                                inputTransform(d(1, 0), d(1, 1), d(1, 2), d(1, 3)),
                                inputTransform(d(2, 0), d(2, 1), d(2, 2), d(2, 3)),
                                inputTransform(d(3, 0), d(3, 1), d(3, 2), d(3, 3)))
                    @inline(__always) func store(column j: Int, _ t: (Vec16, Vec16, Vec16, Vec16)) {
                        storeColumn(j, t, u + tile * channels + c0, pointStride: grid.count * channels)
                    }
                    store(column: 0, inputTransform(rows.0.0, rows.1.0, rows.2.0, rows.3.0))
                    store(column: 1, inputTransform(rows.0.1, rows.1.1, rows.2.1, rows.3.1))
                    store(column: 2, inputTransform(rows.0.2, rows.1.2, rows.2.2, rows.3.2))
                    store(column: 3, inputTransform(rows.0.3, rows.1.3, rows.2.3, rows.3.3))
                }
            }
        }
        return u
    }

    /// The kernels' gradient, the adjoint of `convolve` in the weights: with y = Aᵀ·(V ⊙ U)·A
    /// per tile and V = G·g·Gᵀ, ∂L/∂V[p] = Σ over tiles of U[p] ⊙ (A·dy·Aᵀ)[p] and
    /// ∂L/∂g = Gᵀ·(∂L/∂V)·G. This adds one sample's ∂L/∂V, `dV` `[16, inChannels, outChannels]`,
    /// each element one chain over the tiles continued from the samples before (or started
    /// from +0 when not `accumulate`); `kernelGradient` turns the sum into ∂L/∂g. `input` and
    /// `outputGradient` are channels-last, the output gradient `[Ho·Wo, outChannels]`. Uses
    /// the workspace's Winograd tiles.
    static func accumulateKernelGradient(input: UnsafePointer<Float>, height: Int, width: Int, inChannels: Int,
                                         padding: Int, outputGradient dy: UnsafePointer<Float>, outChannels: Int,
                                         into dV: UnsafeMutablePointer<Float>, accumulate: Bool, workspace: Workspace) {
        let grid = TileGrid(height: height, width: width, padding: padding)
        let u = transformedInput(input, height: height, width: width, channels: inChannels, padding: padding,
                                 grid: grid, workspace: workspace)
        let dyTiles = workspace.floats(.winogradOutputTiles, count: points * grid.count * outChannels)
        // (A·dy·Aᵀ)[p] per tile, dy zero past the output's edge.
        for ty in 0..<grid.rows {
            for tx in 0..<grid.columns {
                let tile = ty * grid.columns + tx
                for o0 in stride(from: 0, to: outChannels, by: 16) {
                    @inline(__always) func g(_ i: Int, _ j: Int) -> Vec16 {
                        let oy = 2 * ty + i, ox = 2 * tx + j
                        guard oy < grid.outHeight, ox < grid.outWidth else { return Vec16() }
                        return load16(dy + (oy * grid.outWidth + ox) * outChannels + o0)
                    }
                    let rows = (gradientTransform(g(0, 0), g(0, 1)), gradientTransform(g(1, 0), g(1, 1)))
                    @inline(__always) func store(column j: Int, _ t: (Vec16, Vec16, Vec16, Vec16)) {
                        storeColumn(j, t, dyTiles + tile * outChannels + o0, pointStride: grid.count * outChannels)
                    }
                    store(column: 0, gradientTransform(rows.0.0, rows.1.0))
                    store(column: 1, gradientTransform(rows.0.1, rows.1.1))
                    store(column: 2, gradientTransform(rows.0.2, rows.1.2))
                    store(column: 3, gradientTransform(rows.0.3, rows.1.3))
                }
            }
        }
        // dV[p] (+)= U[p]ᵀ · (A·dy·Aᵀ)[p], a chain over the tiles.
        for p in 0..<points {
            gemm(m: inChannels, n: outChannels, k: grid.count,
                 a: u + p * grid.count * inChannels, aRowStride: 1, aColStride: inChannels,
                 b: dyTiles + p * grid.count * outChannels, ldb: outChannels,
                 c: dV + p * inChannels * outChannels, ldc: outChannels, accumulate: accumulate)
        }
    }

    /// ∂L/∂g = Gᵀ·dV·G: from `dV` `[16, inChannels, outChannels]` into `kernelGradient`
    /// `[(inChannels, ky, kx), outChannels]`.
    static func kernelGradient(_ dV: UnsafePointer<Float>, inChannels: Int, outChannels: Int,
                               into kernelGradient: UnsafeMutablePointer<Float>) {
        for i in 0..<inChannels {
            for o0 in stride(from: 0, to: outChannels, by: 16) {
                @inline(__always) func v(_ p: Int) -> Vec16 { load16(dV + (p * inChannels + i) * outChannels + o0) }
                let rows = (kernelGradientTransform(v(0), v(1), v(2), v(3)),
                            kernelGradientTransform(v(4), v(5), v(6), v(7)),
                            kernelGradientTransform(v(8), v(9), v(10), v(11)),
                            kernelGradientTransform(v(12), v(13), v(14), v(15)))
                @inline(__always) func store(column kx: Int, _ t: (Vec16, Vec16, Vec16)) {
                    store16(t.0, kernelGradient + (i * 9 + 0 + kx) * outChannels + o0)
                    store16(t.1, kernelGradient + (i * 9 + 3 + kx) * outChannels + o0)
                    store16(t.2, kernelGradient + (i * 9 + 6 + kx) * outChannels + o0)
                }
                store(column: 0, kernelGradientTransform(rows.0.0, rows.1.0, rows.2.0, rows.3.0))
                store(column: 1, kernelGradientTransform(rows.0.1, rows.1.1, rows.2.1, rows.3.1))
                store(column: 2, kernelGradientTransform(rows.0.2, rows.1.2, rows.2.2, rows.3.2))
            }
        }
    }

    /// Column j of a transformed 4×4 tile (its rows 0…3) to points j, 4 + j, 8 + j, 12 + j,
    /// which lie `pointStride` floats apart from `base`.
    @inline(__always)
    private static func storeColumn(_ j: Int, _ t: (Vec16, Vec16, Vec16, Vec16), _ base: UnsafeMutablePointer<Float>,
                                    pointStride: Int) {
        store16(t.0, base + j * pointStride)
        store16(t.1, base + (4 + j) * pointStride)
        store16(t.2, base + (8 + j) * pointStride)
        store16(t.3, base + (12 + j) * pointStride)
    }

    /// One dimension of Bᵀ·d·B: Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1].
    @inline(__always)
    private static func inputTransform(_ d0: Vec16, _ d1: Vec16, _ d2: Vec16, _ d3: Vec16) -> (Vec16, Vec16, Vec16, Vec16) {
        (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
    }

    /// One dimension of G·g·Gᵀ: G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1].
    @inline(__always)
    private static func kernelTransform(_ g0: Vec16, _ g1: Vec16, _ g2: Vec16) -> (Vec16, Vec16, Vec16, Vec16) {
        (g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2)
    }

    /// One dimension of A·dy·Aᵀ: A = [1 0; 1 1; 1 −1; 0 −1].
    @inline(__always)
    private static func gradientTransform(_ g0: Vec16, _ g1: Vec16) -> (Vec16, Vec16, Vec16, Vec16) {
        (g0, g0 + g1, g0 - g1, -g1)
    }

    /// One dimension of Gᵀ·dV·G: Gᵀ = [1 ½ ½ 0; 0 ½ −½ 0; 0 ½ ½ 1].
    @inline(__always)
    private static func kernelGradientTransform(_ v0: Vec16, _ v1: Vec16, _ v2: Vec16, _ v3: Vec16) -> (Vec16, Vec16, Vec16) {
        let sum = (v1 + v2) * 0.5
        return (v0 + sum, (v1 - v2) * 0.5, sum + v3)
    }

    /// One dimension of Aᵀ·M·A: Aᵀ = [1 1 1 0; 0 1 −1 −1].
    @inline(__always)
    private static func outputTransform(_ m0: Vec16, _ m1: Vec16, _ m2: Vec16, _ m3: Vec16) -> (Vec16, Vec16) {
        (m0 + m1 + m2, m1 - m2 - m3)
    }
}
