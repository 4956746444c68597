import Engine
import XCTest

final class WholeBatchGradientsTests: XCTestCase {
    /// A Linear layer's gradients from the factors: dW = Σₛ dyₛ·xₛᵀ and db = Σₛ dyₛ, close to
    /// the sums in Double, and the same bits however the output rows are split over threads.
    func testLinearGradientsFromFactorsAreTheProductAndDoNotDependOnTheRowSplit() throws {
        let (inputs, outputs, samples) = (37, 21, 13)
        var layout = ParameterLayout()
        let layer = try Linear(name: "fc", inShape: [inputs], outFeatures: outputs, layout: &layout, initScheme: .default)
        let x = randomFloats(samples * inputs, seed: 1), dy = randomFloats(samples * outputs, seed: 2)
        let workspace = Workspace()
        func gradients(split: [Range<Int>]) -> [Float] {
            var gradient = [Float](repeating: .nan, count: layout.parameterCount)
            for rows in split {
                layer.factoredGradients(input: x, outputGradient: dy, samples: samples, rows: rows, into: &gradient,
                                        workspace: workspace)
            }
            return gradient
        }
        let whole = gradients(split: [0..<outputs])
        XCTAssertEqual(layer.factoredRange, 0..<layout.parameterCount)
        for o in 0..<outputs {
            for i in 0..<inputs {
                let exact = (0..<samples).reduce(0.0) { $0 + Double(dy[$1 * outputs + o]) * Double(x[$1 * inputs + i]) }
                XCTAssertEqual(Double(whole[o * inputs + i]), exact, accuracy: 1e-5)
            }
            let bias = (0..<samples).reduce(0.0) { $0 + Double(dy[$1 * outputs + o]) }
            XCTAssertEqual(Double(whole[outputs * inputs + o]), bias, accuracy: 1e-5)
        }
        for split in [[0..<8, 8..<16, 16..<21], [0..<16, 16..<21], [0..<5, 5..<6, 6..<21]] {
            XCTAssertEqual(gradients(split: split).map(\.bitPattern), whole.map(\.bitPattern), "rows \(split)")
        }
    }

    /// A layer is computed from the whole batch when B·(in + out) floats are fewer bytes than
    /// its parameters' Int64 sums: mlp's wide layers at batch 64, not its last, and none at 4096.
    func testLayersAreChosenByTheBytesTheirFactorsTake() throws {
        let network = try Network(spec: ModelSpec("mlp"), inputShape: [1, 28, 28], classes: 10)
        let names = { (batch: Int) in
            WholeBatchGradients.chosenLayers(of: network, batchSize: batch).map(\.description)
        }
        XCTAssertEqual(names(64), ["Linear(in_features=784, out_features=256)", "Linear(in_features=256, out_features=128)"])
        XCTAssertEqual(names(4096), [])
        XCTAssertEqual(WholeBatchGradients.gatheredFloats(of: network, batchSize: 64), 64 * (784 + 256 + 256 + 128))
    }
}
