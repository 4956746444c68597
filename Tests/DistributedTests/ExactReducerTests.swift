import DistributedTraining
import Engine
import XCTest

final class ExactReducerTests: XCTestCase {
    let reducer = ExactReducer(communicator: SerialCommunicator())

    func sum(_ rows: [[Float]], segments: [SumSegment]? = nil) throws -> [Float] {
        let width = rows[0].count
        var result = [Float](repeating: .nan, count: width)
        try reducer.sumChunks(rows.flatMap { $0 }, rows: rows.count, width: width,
                              segments: segments ?? [SumSegment(name: "t", range: 0..<width)], into: &result)
        return result
    }

    func testPermutationsOfTheSameValuesGiveTheSameBits() throws {
        let rng = CounterRNG(seed: 3, stream: "reducer")
        // Values spanning many magnitudes, where Float addition order would matter.
        let rows: [[Float]] = (0..<16).map { r in
            (0..<40).map { i in
                let u = rng.unitFloat(UInt64(r * 40 + i))
                return (u - 0.5) * Float(sign: .plus, exponent: Int(rng.integer(UInt64(9_000 + r * 40 + i), below: 40)) - 20, significand: 1)
            }
        }
        let reference = try sum(rows)
        var floatSums = Set<[UInt32]>()
        for p in 0..<20 {
            let order = CounterRNG(seed: UInt64(p), stream: "order").permutation(count: rows.count).map { rows[Int($0)] }
            XCTAssertEqual(try sum(order).map(\.bitPattern), reference.map(\.bitPattern), "permutation \(p)")
            floatSums.insert((0..<40).map { i in order.reduce(Float(0)) { $0 + $1[i] }.bitPattern })
        }
        // The same data summed naively in Float does depend on the order: the test can tell.
        XCTAssertGreaterThan(floatSums.count, 1)
    }

    /// Segments need not cover the values: the others are neither sent nor written.
    func testValuesOutsideTheSegmentsAreLeftAlone() throws {
        let rows: [[Float]] = [[1, 2, 3, 4, 5], [10, 20, 30, 40, 50]]
        let result = try sum(rows, segments: [SumSegment(name: "a", range: 1..<2), SumSegment(name: "b", range: 3..<5)])
        XCTAssertEqual(result[1], 22)
        XCTAssertEqual(Array(result[3...]), [44, 55])
        XCTAssertTrue(result[0].isNaN && result[2].isNaN)
    }

    func testSumsAreCloseToTheRealSum() throws {
        let rows: [[Float]] = [[1e-3, 3, -7, 1e20], [2e-3, 4, 7, -1e20], [4e-3, -0.5, 1e-30, 1]]
        let result = try sum(rows, segments: [SumSegment(name: "a", range: 0..<3), SumSegment(name: "b", range: 3..<4)])
        XCTAssertEqual(result[0], 7e-3, accuracy: 1e-9)
        XCTAssertEqual(result[1], 6.5)
        // 7 + (−7) + 1e-30: the tiny value is below the segment's resolution (max·2⁻³⁹).
        XCTAssertEqual(result[2], 0)
        // Catastrophic cancellation is exact: 1e20 − 1e20 + 1 within the tensor's resolution
        // (max 1e20 · 2⁻³⁸ ≈ 3.6e8), so the 1 vanishes but nothing worse happens.
        XCTAssertEqual(result[3], 0)
    }

    func testExtremeMagnitudesDoNotOverflow() throws {
        let big = Float.greatestFiniteMagnitude / 4
        let result = try sum([[big, .leastNonzeroMagnitude], [big, .leastNonzeroMagnitude], [-big, .leastNonzeroMagnitude]],
                             segments: [SumSegment(name: "big", range: 0..<1), SumSegment(name: "tiny", range: 1..<2)])
        XCTAssertEqual(result[0], big)
        XCTAssertEqual(result[1], 3 * .leastNonzeroMagnitude)
    }

    func testZerosSumToPositiveZero() throws {
        let result = try sum([[-0.0, 0], [-0.0, 0]])
        XCTAssertEqual(result.map(\.bitPattern), [0, 0])
    }

    func testNonFiniteValuesAreReportedWithTheirTensor() throws {
        for bad in [Float.nan, .infinity, -.infinity] {
            XCTAssertThrowsError(try sum([[1, 2, 3], [4, bad, 6]],
                                         segments: [SumSegment(name: "fc1.weight", range: 0..<1), SumSegment(name: "fc1.bias", range: 1..<3)])) { error in
                guard case EngineError.nonFinite(let message) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(message.contains("fc1.bias"), message)
            }
        }
    }

    func testChunkRangesAreContiguousAndEven() {
        for chunks in 1...12 {
            for ranks in 1...chunks {
                let ranges = (0..<ranks).map { chunkRange(rank: $0, ranks: ranks, chunks: chunks) }
                XCTAssertEqual(ranges.first?.lowerBound, 0)
                XCTAssertEqual(ranges.last?.upperBound, chunks)
                for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
                let sizes = ranges.map(\.count)
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1)
                XCTAssertGreaterThan(sizes.min()!, 0)
            }
        }
    }
}
