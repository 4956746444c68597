import Engine
import XCTest

/// The counter-based generator behind shuffling and initialisation (docs/architecture.md §2.1):
/// values are a pure function of (seed, stream, counter).
final class RNGTests: XCTestCase {
    func testPermutationIsAPermutation() {
        for count in [0, 1, 2, 3, 10, 1000, 60_000] {
            let order = CounterRNG(seed: 7, stream: "epoch-0").permutation(count: count)
            XCTAssertEqual(order.count, count)
            XCTAssertEqual(order.sorted(), (0..<count).map { Int32($0) }, "permutation of \(count)")
        }
    }

    func testPermutationIsDeterministicForSeedAndStream() {
        let a = CounterRNG(seed: 7, stream: "epoch-0").permutation(count: 1000)
        XCTAssertEqual(CounterRNG(seed: 7, stream: "epoch-0").permutation(count: 1000), a)
        XCTAssertNotEqual(CounterRNG(seed: 7, stream: "epoch-1").permutation(count: 1000), a, "another epoch")
        XCTAssertNotEqual(CounterRNG(seed: 8, stream: "epoch-0").permutation(count: 1000), a, "another seed")
        XCTAssertNotEqual(a, (0..<1000).map { Int32($0) }, "it shuffles")
        // Epochs 0…9 give ten different orders, and no order leaves many samples in place.
        let orders = (0..<10).map { CounterRNG(seed: 7, stream: "epoch-\($0)").permutation(count: 1000) }
        XCTAssertEqual(Set(orders).count, 10)
        for order in orders {
            XCTAssertLessThan(order.enumerated().filter { $0.offset == Int($0.element) }.count, 10, "fixed points")
        }
    }

    func testStreamsByNameAndNumberAreStable() {
        // The name is hashed (FNV-1a) to a number: equal names give equal generators.
        XCTAssertEqual(CounterRNG(seed: 3, stream: "conv1.weight").key, CounterRNG(seed: 3, stream: "conv1.weight").key)
        XCTAssertNotEqual(CounterRNG(seed: 3, stream: "conv1.weight").key, CounterRNG(seed: 3, stream: "conv1.bias").key)
        XCTAssertNotEqual(CounterRNG(seed: 3, stream: 0).key, CounterRNG(seed: 3, stream: 1).key)
        XCTAssertNotEqual(CounterRNG(seed: 3, stream: 0).key, CounterRNG(seed: 4, stream: 0).key)
        let rng = CounterRNG(seed: 3, stream: 5)
        XCTAssertEqual(rng.bits(17), CounterRNG(seed: 3, stream: 5).bits(17), "a pure function of the counter")
        XCTAssertNotEqual(rng.bits(17), rng.bits(18))
    }

    func testUnitFloatIsInZeroOneWith24Bits() {
        let rng = CounterRNG(seed: 11, stream: "unit")
        var sum = 0.0, below = 0
        let n = 100_000
        for i in 0..<n {
            let u = rng.unitFloat(UInt64(i))
            XCTAssertTrue(u >= 0 && u < 1, "unitFloat(\(i)) = \(u)")
            XCTAssertEqual(u * 0x1p24, (u * 0x1p24).rounded(), "a multiple of 2^-24")
            sum += Double(u)
            if u < 0.25 { below += 1 }
        }
        // Mean 1/2 with standard error √(1/12n) ≈ 0.0009; a quarter below 0.25, ± ~0.0014.
        XCTAssertEqual(sum / Double(n), 0.5, accuracy: 0.005)
        XCTAssertEqual(Double(below) / Double(n), 0.25, accuracy: 0.007)
    }

    func testIntegerBelowStaysInRange() {
        let rng = CounterRNG(seed: 2, stream: "integers")
        for bound in [1, 2, 3, 10, 1000, 1 << 31] {
            var seen = Set<Int>()
            for i in 0..<2000 {
                let v = rng.integer(UInt64(i), below: bound)
                XCTAssertTrue(v >= 0 && v < bound, "integer below \(bound) = \(v)")
                seen.insert(v)
            }
            if bound <= 10 { XCTAssertEqual(seen.count, bound, "every value below \(bound) appears") }
        }
    }

    /// Initial weights: tensor t draws from the stream (seed, t's name), U(±1/√fan_in) as
    /// PyTorch's default, so a tensor's values do not depend on the layers around it.
    func testInitialisationIsKeyedBySeedAndTensorName() throws {
        func initial(_ model: String, _ input: [Int], seed: UInt64) throws -> (Network, [Float], [Float]) {
            let network = try Network(spec: ModelSpec(model), inputShape: input, classes: 10)
            var parameters: [Float] = [], buffers: [Float] = []
            network.layout.initialize(parameters: &parameters, buffers: &buffers, seed: seed)
            return (network, parameters, buffers)
        }
        let (seed, p, _) = try initial("seed-cnn", [1, 28, 28], seed: 1)
        XCTAssertEqual(try initial("seed-cnn", [1, 28, 28], seed: 1).1, p, "deterministic")
        XCTAssertNotEqual(try initial("seed-cnn", [1, 28, 28], seed: 2).1, p, "another seed")
        for (name, fanIn) in [("conv1.weight", 9), ("conv1.bias", 9), ("conv2.weight", 288), ("fc1.weight", 1600), ("fc2.bias", 128)] {
            let values = p[seed.layout.tensor(name).range]
            let bound = 1 / Float(fanIn).squareRoot()
            XCTAssertTrue(values.allSatisfy { abs($0) <= bound }, "\(name) within ±\(bound)")
            if values.count >= 200 {
                XCTAssertGreaterThan(values.map(abs).max()!, 0.95 * bound, "\(name) fills its range")
                XCTAssertEqual(values.reduce(0, +) / Float(values.count), 0, accuracy: 0.1 * bound, "\(name) mean")
            }
        }
        // fc2 is Linear(128, 10) in both models: the same name and bound give the same values.
        let (cifar, q, _) = try initial("cifar-cnn", [3, 32, 32], seed: 1)
        XCTAssertEqual(Array(q[cifar.layout.tensor("fc2.weight").range]), Array(p[seed.layout.tensor("fc2.weight").range]))
        XCTAssertNotEqual(Array(q[cifar.layout.tensor("conv1.weight").range].prefix(9)),
                          Array(p[seed.layout.tensor("conv1.weight").range].prefix(9)), "fan-in 27 vs 9: another bound")
        // Same stream, so the same draws scaled by the ratio of the bounds, √9/√27.
        let ratio = q[cifar.layout.tensor("conv1.weight").offset] / p[seed.layout.tensor("conv1.weight").offset]
        XCTAssertEqual(ratio, 1 / Float(3).squareRoot(), accuracy: 1e-6)
        let (bn, r, buffers) = try initial("seed-cnn-bn", [1, 28, 28], seed: 1)
        XCTAssertTrue(r[bn.layout.tensor("bn1.weight").range].allSatisfy { $0 == 1 })
        XCTAssertTrue(r[bn.layout.tensor("bn1.bias").range].allSatisfy { $0 == 0 })
        XCTAssertTrue(buffers[bn.layout.tensor("bn2.running_mean").range].allSatisfy { $0 == 0 })
        XCTAssertTrue(buffers[bn.layout.tensor("bn2.running_var").range].allSatisfy { $0 == 1 })
    }
}
