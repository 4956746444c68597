import Engine
import Foundation
import XCTest

/// `VectorMath`'s contract: within 2 ulp of the correctly rounded result (Foundation's Double
/// function rounded to Float), the stated edge values, and the same bits for an element whether
/// it lies in a full vector, in a padded tail or alone. `scripts/check-vector-math` runs
/// `testEveryFloat` over all 2³² inputs; here the inputs are dense samples of each function's
/// interesting range.
final class VectorMathTests: XCTestCase {
    typealias Kernel = (Vec16) -> Vec16

    static let functions: [(name: String, kernel: Kernel, reference: (Double) -> Double)] = [
        ("exp", VectorMath.exp, Foundation.exp),
        ("log", VectorMath.log, Foundation.log),
        ("tanh", VectorMath.tanh, Foundation.tanh),
        ("erf", VectorMath.erf, Foundation.erf),
        ("sigmoid", VectorMath.sigmoid, { 1 / (1 + Foundation.exp(-$0)) }),
    ]

    /// The distance in representable Floats between a and b (0 for +0 and −0 and for two NaNs,
    /// Int64.max for NaN against a number).
    static func ulps(_ a: Float, _ b: Float) -> Int64 {
        if a.isNaN || b.isNaN { return a.isNaN && b.isNaN ? 0 : .max }
        func ordered(_ x: Float) -> Int64 {
            let i = Int64(Int32(bitPattern: x.bitPattern))
            return i < 0 ? Int64(Int32.min) - i : i
        }
        return abs(ordered(a) - ordered(b))
    }

    /// The largest ulp error of `kernel` over xs, and the input where it occurs.
    static func maxError(_ kernel: Kernel, _ reference: (Double) -> Double, over xs: [Float]) -> (ulps: Int64, x: Float) {
        var ys = [Float](repeating: 0, count: xs.count)
        xs.withUnsafeBufferPointer { x in
            ys.withUnsafeMutableBufferPointer { y in mapVectors(x.baseAddress!, into: y.baseAddress!, count: xs.count, kernel) }
        }
        var worst: (ulps: Int64, x: Float) = (0, 0)
        for (x, y) in zip(xs, ys) {
            let error = ulps(y, Float(reference(Double(x))))
            if error > worst.ulps { worst = (error, x) }
        }
        return worst
    }

    /// count points evenly over [lower, upper].
    func grid(_ lower: Float, _ upper: Float, count: Int = 500_000) -> [Float] {
        (0..<count).map { lower + (upper - lower) * Float($0) / Float(count - 1) }
    }

    /// count Floats with bit patterns drawn uniformly from lower...upper (an even spread over
    /// every binade in between).
    func bitPatterns(_ lower: UInt32, _ upper: UInt32, count: Int = 500_000, stream: String) -> [Float] {
        let rng = CounterRNG(seed: 11, stream: stream)
        return (0..<count).map { Float(bitPattern: lower + UInt32(rng.bits(UInt64($0)) % UInt64(upper - lower + 1))) }
    }

    /// Positive and negative values of bitPatterns between 2⁻¹⁴⁹ and `upper`.
    func bothSigns(upTo upper: Float, stream: String) -> [Float] {
        bitPatterns(1, upper.bitPattern, stream: stream).flatMap { [$0, -$0] }
    }

    func checkAccuracy(_ name: String, over xs: [Float], file: StaticString = #filePath, line: UInt = #line) {
        let function = Self.functions.first { $0.name == name }!
        let worst = Self.maxError(function.kernel, function.reference, over: xs)
        print("VectorMath.\(name): max error \(worst.ulps) ulp at \(worst.x) over \(xs.count) inputs")
        XCTAssertLessThanOrEqual(worst.ulps, 2, "\(name)(\(worst.x)) is \(worst.ulps) ulp off", file: file, line: line)
    }

    func testExpAccuracy() {
        checkAccuracy("exp", over: grid(-104, 89, count: 1_000_000) + grid(-1, 1) + bothSigns(upTo: 1, stream: "exp"))
    }

    func testLogAccuracy() {
        checkAccuracy("log", over: bitPatterns(1, Float.greatestFiniteMagnitude.bitPattern, count: 1_000_000, stream: "log")
                          + grid(0.5, 2) + grid(1 - 0x1p-10, 1 + 0x1p-10))
    }

    func testTanhAccuracy() {
        checkAccuracy("tanh", over: grid(-10, 10, count: 1_000_000) + grid(-1, 1) + bothSigns(upTo: 12, stream: "tanh"))
    }

    func testErfAccuracy() {
        checkAccuracy("erf", over: grid(-5, 5, count: 1_000_000) + grid(-1.2, 1.2) + bothSigns(upTo: 6, stream: "erf"))
    }

    func testSigmoidAccuracy() {
        checkAccuracy("sigmoid", over: grid(-105, 90, count: 1_000_000) + grid(-20, 20) + bothSigns(upTo: 105, stream: "sigmoid"))
    }

    func testEdgeValues() {
        let inf = Float.infinity
        func value(_ kernel: Kernel, _ x: Float) -> Float { kernel(Vec16(repeating: x))[0] }
        for function in Self.functions {
            XCTAssertTrue(value(function.kernel, .nan).isNaN, "\(function.name)(NaN)")
            XCTAssertTrue(value(function.kernel, -.nan).isNaN, "\(function.name)(−NaN)")
        }
        XCTAssertEqual(value(VectorMath.exp, inf), inf)
        XCTAssertEqual(value(VectorMath.exp, -inf), 0)
        XCTAssertTrue(value(VectorMath.exp, 88.72283).isFinite, "exp's largest finite result")
        XCTAssertEqual(value(VectorMath.exp, 88.7229), inf, "exp overflows")
        XCTAssertEqual(value(VectorMath.exp, 200), inf)
        XCTAssertEqual(value(VectorMath.exp, -103.9), Float.leastNonzeroMagnitude, "exp's smallest subnormal")
        XCTAssertEqual(value(VectorMath.exp, -104), 0, "exp underflows")
        XCTAssertEqual(value(VectorMath.exp, -200), 0)
        XCTAssertEqual(value(VectorMath.exp, 0), 1)
        XCTAssertEqual(value(VectorMath.exp, -0.0), 1)

        XCTAssertEqual(value(VectorMath.log, 0), -inf)
        XCTAssertEqual(value(VectorMath.log, -0.0), -inf)
        XCTAssertTrue(value(VectorMath.log, -1).isNaN)
        XCTAssertTrue(value(VectorMath.log, -.leastNonzeroMagnitude).isNaN)
        XCTAssertTrue(value(VectorMath.log, -inf).isNaN)
        XCTAssertEqual(value(VectorMath.log, inf), inf)
        XCTAssertEqual(value(VectorMath.log, 1), 0)
        XCTAssertLessThanOrEqual(Self.ulps(value(VectorMath.log, .leastNonzeroMagnitude), Float(Foundation.log(0x1p-149))), 2)
        XCTAssertLessThanOrEqual(Self.ulps(value(VectorMath.log, .greatestFiniteMagnitude),
                                           Float(Foundation.log(Double(Float.greatestFiniteMagnitude)))), 2)

        for (kernel, name) in [(VectorMath.tanh, "tanh"), (VectorMath.erf, "erf")] as [(Kernel, String)] {
            XCTAssertEqual(value(kernel, inf), 1, "\(name)(inf)")
            XCTAssertEqual(value(kernel, -inf), -1, "\(name)(−inf)")
            XCTAssertEqual(value(kernel, 30), 1, "\(name)(30)")
            XCTAssertEqual(value(kernel, -30), -1, "\(name)(−30)")
            XCTAssertEqual(value(kernel, .greatestFiniteMagnitude), 1, "\(name)(max)")
            XCTAssertEqual(value(kernel, 0).bitPattern, Float(0).bitPattern, "\(name)(+0)")
            XCTAssertEqual(value(kernel, -0.0).bitPattern, Float(-0.0).bitPattern, "\(name) keeps the sign of zero")
            XCTAssertEqual(value(kernel, -.leastNonzeroMagnitude).sign, .minus, "\(name)(−tiny)")
        }
        XCTAssertEqual(value(VectorMath.tanh, .leastNonzeroMagnitude), .leastNonzeroMagnitude)

        XCTAssertEqual(value(VectorMath.sigmoid, inf), 1)
        XCTAssertEqual(value(VectorMath.sigmoid, -inf), 0)
        XCTAssertEqual(value(VectorMath.sigmoid, 0), 0.5)
        XCTAssertLessThanOrEqual(Self.ulps(value(VectorMath.sigmoid, -100), Float(Foundation.exp(-100.0))), 2,
                                 "sigmoid(−100) is subnormal, not 0")
    }

    /// Each element's result is the same bits in a full vector, in a padded tail of any length,
    /// and alone in any lane of a vector of other values.
    func testTailsAndLanesGiveTheSameBits() {
        let specials: [Float] = [0, -0.0, .nan, .infinity, -.infinity, 1, -1, 88.72283, -103.97, 0x1p-140]
        let xs = specials + randomFloats(47, seed: 3, stream: "vector math tails", scale: 6)
        let others = randomFloats(16, seed: 4, stream: "vector math lanes", scale: 50)
        for function in Self.functions {
            for count in 1...xs.count {
                var ys = [Float](repeating: 0, count: count)
                ys.withUnsafeMutableBufferPointer { y in mapVectors(xs, into: y.baseAddress!, count: count, function.kernel) }
                for i in 0..<count {
                    var lanes = Vec16(others)
                    lanes[i % 16] = xs[i]
                    let alone = function.kernel(lanes)[i % 16]
                    XCTAssertEqual(ys[i].bitPattern, alone.bitPattern,
                                   "\(function.name)(\(xs[i])) at \(i) of \(count) differs from lane \(i % 16) alone")
                }
            }
        }
    }

    /// Every Float input, for `scripts/check-vector-math` (minutes; skipped unless
    /// SWIFT_CNN_TRAIN_EVERY_FLOAT=1). Prints each function's largest error and asserts ≤ 2 ulp.
    func testEveryFloat() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SWIFT_CNN_TRAIN_EVERY_FLOAT"] == "1",
                          "set SWIFT_CNN_TRAIN_EVERY_FLOAT=1 (scripts/check-vector-math) to try all 2³² inputs")
        let blocks = 1 << 16  // of 2¹⁶ bit patterns each
        for function in Self.functions {
            let worst = UnsafeMutablePointer<(ulps: Int64, x: Float)>.allocate(capacity: blocks)
            DispatchQueue.concurrentPerform(iterations: blocks) { block in
                let xs = (0..<(1 << 16)).map { Float(bitPattern: UInt32(block << 16 | $0)) }
                worst[block] = Self.maxError(function.kernel, function.reference, over: xs)
            }
            let overall = (0..<blocks).map { worst[$0] }.max { $0.ulps < $1.ulps }!
            worst.deallocate()
            print("every Float: VectorMath.\(function.name) max error \(overall.ulps) ulp at \(overall.x)")
            XCTAssertLessThanOrEqual(overall.ulps, 2, "\(function.name)(\(overall.x))")
        }
    }
}
