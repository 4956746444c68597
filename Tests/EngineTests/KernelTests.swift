import Engine
import Foundation
import XCTest

/// The kernels' bit-level contracts (docs/architecture.md §2.3): `gemm` is one fixed-order FMA
/// chain per element, horizontal sums have a lane order written in the source, and ScalarMath is
/// accurate against Foundation's Double functions.
final class KernelTests: XCTestCase {
    /// C[i, j] = (accumulate ? C[i, j] : 0) then acc = acc.addingProduct(A[i, p], B[p, j]) for
    /// p = 0..<k — the order `gemm` documents, one element at a time.
    func referenceGemm(m: Int, n: Int, k: Int, a: [Float], aRowStride: Int, aColStride: Int, b: [Float], ldb: Int,
                       c: inout [Float], ldc: Int, accumulate: Bool) {
        for i in 0..<m {
            for j in 0..<n {
                var acc: Float = accumulate ? c[i * ldc + j] : 0
                for p in 0..<k { acc = acc.addingProduct(a[i * aRowStride + p * aColStride], b[p * ldb + j]) }
                c[i * ldc + j] = acc
            }
        }
    }

    /// Values of mixed magnitude, so that fused and unfused or reordered sums round differently.
    func values(_ count: Int, _ stream: String) -> [Float] {
        let rng = CounterRNG(seed: 11, stream: stream)
        return (0..<count).map { i in
            (2 * rng.unitFloat(UInt64(2 * i)) - 1) * Float(sign: .plus, exponent: Int(rng.integer(UInt64(2 * i + 1), below: 12)) - 6,
                                                           significand: 1)
        }
    }

    func checkGemm(m: Int, n: Int, k: Int, transposedA: Bool, accumulate: Bool) {
        // Padded leading dimensions: gemm must write only inside the m×n window. B is tight
        // when A is transposed, so that the last column block ends at B's last element.
        let lda = (transposedA ? m : k) + 3, ldb = n + (transposedA ? 0 : 5), ldc = n + 7
        let a = values(lda * (transposedA ? k : m), "a"), b = values(k * ldb, "b")
        let (aRowStride, aColStride) = transposedA ? (1, lda) : (lda, 1)
        let start = values(m * ldc, "c")
        var expected = start, got = start
        referenceGemm(m: m, n: n, k: k, a: a, aRowStride: aRowStride, aColStride: aColStride, b: b, ldb: ldb,
                      c: &expected, ldc: ldc, accumulate: accumulate)
        gemm(m: m, n: n, k: k, a: a, aRowStride: aRowStride, aColStride: aColStride, b: b, ldb: ldb,
             c: &got, ldc: ldc, accumulate: accumulate)
        if let i = got.indices.first(where: { got[$0].bitPattern != expected[$0].bitPattern }) {
            XCTFail("gemm m \(m) n \(n) k \(k) transposedA \(transposedA) accumulate \(accumulate): C[\(i / ldc), \(i % ldc)] = \(got[i]), reference \(expected[i])")
        }
    }

    func testGemmMatchesTheFixedOrderChainBitForBit() {
        let sizes = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 70]
        for m in [1, 3, 4, 5, 8, 9, 17, 33, 70] {
            for n in sizes {
                for k in [1, 2, 7, 16, 27, 64, 70] {
                    for transposedA in [false, true] {
                        for accumulate in [false, true] {
                            checkGemm(m: m, n: n, k: k, transposedA: transposedA, accumulate: accumulate)
                        }
                    }
                }
            }
        }
    }

    /// A read through row and column offset tables (how a convolution reads its im2col matrix
    /// from the input) gives the bits of the same A laid out as a matrix.
    func testGemmReadsAThroughOffsetTablesBitForBit() {
        for (m, n, k) in [(121, 64, 288), (9, 32, 676), (17, 33, 5), (1, 16, 9), (70, 47, 31)] {
            let source = values(4 * (m + k) + 16, "source \(m)")
            // Overlapping, non-monotonic starts, as im2col's are.
            let rowOffsets = (0..<m).map { ($0 * 7) % (2 * m + 1) }, colOffsets = (0..<k).map { ($0 * 5) % (2 * k + 3) }
            let a = (0..<(m * k)).map { source[rowOffsets[$0 / k] + colOffsets[$0 % k]] }
            let b = values(k * n, "b \(m)")
            for accumulate in [false, true] {
                var expected = values(m * n, "c \(m)"), got = expected
                referenceGemm(m: m, n: n, k: k, a: a, aRowStride: k, aColStride: 1, b: b, ldb: n,
                              c: &expected, ldc: n, accumulate: accumulate)
                gemm(m: m, n: n, k: k, a: source, aRowStride: 0, aColStride: 0, aRowOffsets: rowOffsets,
                     aColOffsets: colOffsets, b: b, ldb: n, c: &got, ldc: n, accumulate: accumulate)
                XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "m \(m) n \(n) k \(k) accumulate \(accumulate)")
            }
        }
    }

    /// A Linear layer's deferred weight-gradient partials, recomputed block by block when a
    /// reduction reads them, are bit for bit the chunk's dyᵀ·x as one gemm computes it (the
    /// partials the layer used to store), for uneven chunks and a last block of fewer rows.
    func testDeferredLinearPartialsMatchTheStoredProductBitForBit() throws {
        let (inputs, outputs, samples, chunkSize) = (37, 13, 7, 3)
        var layout = ParameterLayout()
        let layer = try Linear(name: "fc", inShape: [inputs], outFeatures: outputs, layout: &layout, initScheme: .default)
        let x = values(samples * inputs, "x"), dy = values(samples * outputs, "dy")
        var parameters = values(layout.parameterCount, "w")
        let chunks = (samples + chunkSize - 1) / chunkSize
        var chunkGradients = [Float](repeating: 0, count: chunks * layout.parameterCount)
        var y = [Float](repeating: 0, count: samples * outputs), dx = [Float](repeating: 0, count: samples * inputs)
        try x.withUnsafeBufferPointer { x in
            try parameters.withUnsafeMutableBufferPointer { parameters in
                try chunkGradients.withUnsafeMutableBufferPointer { grads in
                    let pass = Pass(samples: .init(count: samples, chunkSize: chunkSize, globalCount: samples),
                                    state: .init(parameters: parameters.baseAddress!, buffers: parameters.baseAddress!, chunkGradients: grads.baseAddress!,
                                                 parameterCount: layout.parameterCount),
                                    training: true, executor: ParallelExecutor(threads: 1), reducer: ExactReducer(communicator: SerialCommunicator()), hyper: LayerHyperparameters())
                    try layer.forward(&y, x.baseAddress!, pass)
                    try layer.backward(&dx, dy, x.baseAddress!, &y, pass)
                    let partials = GradientPartials(pass: pass, layers: [layer])
                    let weight = layer.deferredRange
                    XCTAssertEqual(partials.blockLength(of: weight) % inputs, 0, "blocks are whole weight rows")
                    for b in 0..<partials.blockCount(of: weight) {
                        let block = partials.block(b, of: weight)
                        let (base, rowStride) = partials.rows(block, workspace: pass.executor.workspaces[0])
                        for chunk in 0..<chunks {
                            let range = pass.samples(ofChunk: chunk)
                            var stored = [Float](repeating: 0, count: outputs * inputs)
                            gemm(m: outputs, n: inputs, k: range.count, a: Array(dy[(range.lowerBound * outputs)...]),
                                 aRowStride: 1, aColStride: outputs, b: x.baseAddress! + range.lowerBound * inputs,
                                 ldb: inputs, c: &stored, ldc: inputs, accumulate: false)
                            let expected = stored[(block.lowerBound - weight.lowerBound)..<(block.upperBound - weight.lowerBound)]
                            let got = (0..<block.count).map { base[chunk * rowStride + $0] }
                            XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "chunk \(chunk), block \(block)")
                        }
                    }
                }
            }
        }
    }

    /// The reference itself must be able to tell orders apart: an unfused multiply-add chain
    /// differs from it on most of these dot products, so agreement above is not an accident of
    /// the data; and gemm follows the fused chain on every one of them.
    func testGemmReferenceDistinguishesFusedFromUnfused() {
        var differ = 0
        for trial in 0..<20 {
            let a = values(64, "a \(trial)"), b = values(64, "b \(trial)")
            var fused: Float = 0, unfused: Float = 0
            for p in 0..<64 {
                fused = fused.addingProduct(a[p], b[p])
                unfused = unfused + a[p] * b[p]
            }
            var c: [Float] = [0]
            gemm(m: 1, n: 1, k: 64, a: a, aRowStride: 64, aColStride: 1, b: b, ldb: 1, c: &c, ldc: 1, accumulate: false)
            XCTAssertEqual(c[0].bitPattern, fused.bitPattern, "dot product \(trial)")
            if fused != unfused { differ += 1 }
        }
        XCTAssertGreaterThanOrEqual(differ, 5)
    }

    /// `horizontalSum`'s documented order: 16 lane sums over blocks of 16, the tail added to lanes
    /// 0, 1, …, then lanes combined 8+8, 4+4, 2+2, 1+1.
    func referenceLaneSum(_ x: [Float]) -> Float {
        var lanes = [Float](repeating: 0, count: 16)
        var i = 0
        while i + 16 <= x.count {
            for l in 0..<16 { lanes[l] += x[i + l] }
            i += 16
        }
        for (lane, j) in (i..<x.count).enumerated() { lanes[lane] += x[j] }
        var width = 8
        while width >= 1 {
            for l in 0..<width { lanes[l] = lanes[l] + lanes[l + width] }
            width /= 2
        }
        return lanes[0]
    }

    func testHorizontalSumFollowsItsDocumentedLaneOrder() {
        var differsFromSequential = 0
        for count in 0...100 {
            let x = values(count, "sum \(count)")
            let got = horizontalSum(x, count: count)
            XCTAssertEqual(got.bitPattern, referenceLaneSum(x).bitPattern, "horizontalSum of \(count) values")
            let viaLaneSum = x.withUnsafeBufferPointer { p in
                laneSum(count: count, { Vec16(p[$0..<($0 + 16)]) }, { p[$0] })
            }
            XCTAssertEqual(viaLaneSum.bitPattern, got.bitPattern, "laneSum of \(count) values")
            if got != x.reduce(0, +) { differsFromSequential += 1 }
        }
        // The data is such that order matters, so the assertions above pin the order down.
        XCTAssertGreaterThan(differsFromSequential, 20)
        XCTAssertEqual(horizontalSum([], count: 0).bitPattern, Float(0).bitPattern)
    }

    // MARK: ScalarMath

    /// Points spread over [lower, upper]: a uniform grid plus random points.
    func points(_ lower: Double, _ upper: Double, count: Int = 4000) -> [Double] {
        let rng = CounterRNG(seed: 5, stream: "points \(lower) \(upper)")
        let grid = (0...count).map { lower + (upper - lower) * Double($0) / Double(count) }
        let random = (0..<count).map { lower + (upper - lower) * Double(rng.bits(UInt64($0)) >> 11) * 0x1p-53 }
        return grid + random
    }

    /// Relative error ≤ `tolerance` in Double, and the Float version within 1 ulp of
    /// Float(Foundation's value).
    func checkAccuracy(_ name: String, _ ours: (Double) -> Double, _ oursFloat: (Float) -> Float,
                       _ reference: (Double) -> Double, over xs: [Double], tolerance: Double = 1e-14,
                       file: StaticString = #filePath, line: UInt = #line) {
        var worst = (x: 0.0, error: 0.0)
        for x in xs {
            let expected = reference(x), got = ours(x)
            let error = expected == got ? 0 : abs(got - expected) / max(abs(expected), .leastNormalMagnitude)
            if !(error <= worst.error) { worst = (x, error) }
            let xf = Float(x)
            let expectedFloat = Float(reference(Double(xf))), gotFloat = oursFloat(xf)
            if expectedFloat != gotFloat && !(expectedFloat.isNaN && gotFloat.isNaN) {
                let ulps = abs(Int64(gotFloat.bitPattern) - Int64(expectedFloat.bitPattern))
                XCTAssertLessThanOrEqual(ulps, 1, "\(name)(Float \(xf)) = \(gotFloat), Foundation \(expectedFloat)",
                                         file: file, line: line)
            }
        }
        XCTAssertLessThanOrEqual(worst.error, tolerance, "\(name)(\(worst.x)): relative error \(worst.error)",
                                 file: file, line: line)
    }

    func testExpMatchesFoundation() {
        // Normal results only (below −708.4 the result is subnormal and has fewer bits).
        checkAccuracy("exp", ScalarMath.exp, ScalarMath.exp, Foundation.exp,
                      over: points(-708, 709.7) + points(-1, 1) + points(-1e-6, 1e-6))
        for x in stride(from: -745.0, through: -708.5, by: 0.37) {
            XCTAssertEqual(ScalarMath.exp(x), Foundation.exp(x), accuracy: 4 * Double.leastNonzeroMagnitude, "exp(\(x))")
        }
    }

    func testLogMatchesFoundation() {
        let wide = points(-1070, 1020).map { Foundation.exp2($0) }
        checkAccuracy("log", ScalarMath.log, ScalarMath.log, Foundation.log,
                      over: wide + points(0.5, 2) + points(1 - 1e-6, 1 + 1e-6) + points(1e-300, 1e300, count: 500))
    }

    func testTanhMatchesFoundation() {
        checkAccuracy("tanh", ScalarMath.tanh, { Float(ScalarMath.tanh(Double($0))) }, Foundation.tanh,
                      over: points(-25, 25) + points(-0.6, 0.6) + points(-1e-8, 1e-8))
    }

    func testSpecialValues() {
        let inf = Double.infinity
        XCTAssertTrue(ScalarMath.exp(Double.nan).isNaN)
        XCTAssertEqual(ScalarMath.exp(inf), inf)
        XCTAssertEqual(ScalarMath.exp(-inf), 0)
        XCTAssertEqual(ScalarMath.exp(0.0), 1)
        XCTAssertEqual(ScalarMath.exp(-0.0), 1)
        XCTAssertEqual(ScalarMath.exp(710.0), inf)
        XCTAssertEqual(ScalarMath.exp(-746.0), 0)
        XCTAssertEqual(ScalarMath.exp(Double.greatestFiniteMagnitude), inf)
        XCTAssertEqual(ScalarMath.exp(Float(89)), Float.infinity, "Float overflow")
        XCTAssertEqual(ScalarMath.exp(Float(-104)), 0, "Float underflow")

        XCTAssertTrue(ScalarMath.log(Double.nan).isNaN)
        XCTAssertTrue(ScalarMath.log(-1.0).isNaN)
        XCTAssertTrue(ScalarMath.log(-inf).isNaN)
        XCTAssertEqual(ScalarMath.log(0.0), -inf)
        XCTAssertEqual(ScalarMath.log(-0.0), -inf)
        XCTAssertEqual(ScalarMath.log(inf), inf)
        XCTAssertEqual(ScalarMath.log(1.0), 0)
        XCTAssertEqual(ScalarMath.log(Double.leastNonzeroMagnitude), Foundation.log(Double.leastNonzeroMagnitude),
                       accuracy: 1e-12)
        XCTAssertEqual(ScalarMath.log(Double.greatestFiniteMagnitude), Foundation.log(Double.greatestFiniteMagnitude),
                       accuracy: 1e-12)
        XCTAssertEqual(ScalarMath.log(Float(0)), -Float.infinity)

        XCTAssertTrue(ScalarMath.tanh(Double.nan).isNaN)
        XCTAssertEqual(ScalarMath.tanh(inf), 1)
        XCTAssertEqual(ScalarMath.tanh(-inf), -1)
        XCTAssertEqual(ScalarMath.tanh(0.0).bitPattern, (0.0).bitPattern)
        XCTAssertEqual(ScalarMath.tanh(-0.0).bitPattern, (-0.0).bitPattern, "tanh keeps the sign of zero")
        XCTAssertEqual(ScalarMath.tanh(1e-300), 1e-300)

    }
}
