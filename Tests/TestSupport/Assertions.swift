import XCTest

// Float comparisons for tests in every target: to a tolerance, or bit for bit.

/// Asserts |got − expected| ≤ tolerance · max(floor, |expected|) elementwise, reporting the
/// worst element. `floor` 1 makes the bound absolute for small values, relative for large ones.
public func assertClose(_ got: [Float], _ expected: [Float], tolerance: Float, floor: Float = 1, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard got.count == expected.count else {
        return XCTFail("\(what): \(got.count) values, expected \(expected.count)", file: file, line: line)
    }
    var worst: (index: Int, excess: Float)?
    for i in got.indices {
        let bound = tolerance * max(floor, abs(expected[i]))
        let error = abs(got[i] - expected[i])
        if !(error <= bound), worst == nil || !(error / bound <= worst!.excess) {
            worst = (i, error / bound)
        }
    }
    if let (i, excess) = worst {
        XCTFail("\(what)[\(i)] = \(got[i]), expected \(expected[i]) (error \(abs(got[i] - expected[i])), \(excess)× the bound)",
                file: file, line: line)
    }
}

/// Compares a full flat tensor with a fixture tensor, which may hold only every stride-th element.
public func assertClose(_ got: [Float], _ expected: FixtureTensor, tolerance: Float, floor: Float = 1, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.count, expected.shape.reduce(1, *), "\(what): element count", file: file, line: line)
    let stride = expected.stride ?? 1
    let sampled = Swift.stride(from: 0, to: got.count, by: stride).map { got[$0] }
    assertClose(sampled, expected.data, tolerance: tolerance, floor: floor, what, file: file, line: line)
}

/// True if both arrays hold the same bits.
public func bitwiseEqual(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

public func assertBitwiseEqual(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    guard a.count == b.count else { return XCTFail("\(what): \(a.count) vs \(b.count) values", file: file, line: line) }
    if let i = a.indices.first(where: { a[$0].bitPattern != b[$0].bitPattern }) {
        XCTFail("\(what) differs at \(i): \(a[i]) vs \(b[i])", file: file, line: line)
    }
}
