import Engine
import XCTest

/// Model presets and the text spec: parameter counts worked out per layer, layer order, and
/// errors that name what is wrong.
final class ModelSpecTests: XCTestCase {
    func network(_ spec: String, input: [Int] = [1, 28, 28], classes: Int = 10) throws -> Network {
        try Network(spec: ModelSpec(spec), inputShape: input, classes: classes)
    }

    func descriptions(_ n: Network) -> [String] { n.layers.map(\.description) }

    /// conv1 32·1·9 + 32 = 320; conv2 64·32·9 + 64 = 18,496; 28 → 26 → 13 → 11 → 5, so
    /// fc1 sees 64·5·5 = 1,600: 1,600·128 + 128 = 204,928; fc2 128·10 + 10 = 1,290. Total 225,034.
    func testSeedCNN() throws {
        let n = try network("seed-cnn")
        XCTAssertEqual(n.parameterCount, 225_034)
        XCTAssertEqual(n.layout.bufferCount, 0)
        XCTAssertEqual(n.loss, .crossEntropy)
        XCTAssertEqual(descriptions(n), [
            "Conv2d(1, 32, kernel_size=3, stride=1, padding=0)", "ReLU()", "MaxPool2d(kernel_size=2, stride=2)",
            "Conv2d(32, 64, kernel_size=3, stride=1, padding=0)", "ReLU()", "MaxPool2d(kernel_size=2, stride=2)",
            "Flatten()", "Linear(in_features=1600, out_features=128)", "ReLU()", "Linear(in_features=128, out_features=10)",
        ])
        XCTAssertEqual(n.layout.parameters.map(\.name), [
            "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
        ])
        XCTAssertEqual(n.layout.tensor("fc1.weight").shape, [128, 1600])
        XCTAssertEqual(n.layout.tensor("fc1.weight").offset, 320 + 18_496)
    }

    /// seed-cnn plus γ and β of 32 and 64 channels: 225,034 + 2·96 = 225,226; running mean and
    /// variance are buffers (2·96 = 192), not parameters.
    func testSeedCNNWithBatchNorm() throws {
        let n = try network("seed-cnn-bn")
        XCTAssertEqual(n.parameterCount, 225_226)
        XCTAssertEqual(n.layout.bufferCount, 192)
        XCTAssertEqual(n.layout.buffers.map(\.name), ["bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"])
        XCTAssertEqual(descriptions(n)[1], "BatchNorm2d(32)")
    }

    /// 3×32×32: conv16k3p1 16·27 + 16 = 448 (32×32 → pool 16×16); conv32k3p1 32·144 + 32 = 4,640
    /// (→ pool 8×8); fc 2,048·128 + 128 = 262,272; fc 1,290. Total 268,650.
    func testCIFARCNN() throws {
        let n = try network("cifar-cnn", input: [3, 32, 32])
        XCTAssertEqual(n.parameterCount, 268_650)
        XCTAssertEqual(n.layers[0].outputShape, [16, 32, 32])
    }

    /// 28 → pool 14 → pool 7 → pool 3: conv 320 + 18,496 + 128·576 + 128 = 73,856; fc256
    /// 1,152·256 + 256 = 295,168; fc26 256·26 + 26 = 6,682. Total 394,522; NLL loss.
    func testLettersCNN() throws {
        let n = try network("letters-cnn", classes: 26)
        XCTAssertEqual(n.parameterCount, 394_522)
        XCTAssertEqual(n.loss, .nll)
        XCTAssertEqual(descriptions(n).last, "LogSoftmax(dim=1)")
        XCTAssertEqual(descriptions(n)[2], "GELU(approximate='none')")
    }

    /// Flatten 784; 784·256 + 256 = 200,960; 256·128 + 128 = 32,896; 1,290. Total 235,146.
    func testMLP() throws {
        let n = try network("mlp")
        XCTAssertEqual(n.parameterCount, 235_146)
        XCTAssertEqual(descriptions(n), [
            "Flatten()", "Linear(in_features=784, out_features=256)", "Tanh()",
            "Linear(in_features=256, out_features=128)", "Tanh()", "Linear(in_features=128, out_features=10)",
        ])
    }

    func testCustomSpecs() throws {
        let spec = try ModelSpec("conv8k5s2p2-bn-gelu-avgpool2-conv4k3-tanh-maxpool3s2-flatten-fc")
        XCTAssertEqual(spec.tokens, [
            .conv(out: 8, kernel: 5, stride: 2, padding: 2), .batchNorm, .activation(.gelu), .avgPool(kernel: 2, stride: 2),
            .conv(out: 4, kernel: 3, stride: 1, padding: 0), .activation(.tanh), .maxPool(kernel: 3, stride: 2), .flatten,
            .linear(out: nil),
        ])
        // 28 → (28 + 4 − 5)/2 + 1 = 14 → avgpool 7 → conv 5 → maxpool3s2 (5 − 3)/2 + 1 = 2: 4·2·2 = 16 features.
        let n = try Network(spec: spec, inputShape: [1, 28, 28], classes: 3)
        XCTAssertEqual(n.layers.map(\.outputShape), [[8, 14, 14], [8, 14, 14], [8, 14, 14], [8, 7, 7], [4, 5, 5], [4, 5, 5],
                                                     [4, 2, 2], [16], [3]])
        // 8·25 + 8 = 208; bn 16; 4·72 + 4 = 292; 16·3 + 3 = 51.
        XCTAssertEqual(n.parameterCount, 208 + 16 + 292 + 51)
        XCTAssertEqual(try ModelSpec("fc").text, "fc")
        XCTAssertEqual(try ModelSpec("seed-cnn").text, "conv32k3-relu-maxpool2-conv64k3-relu-maxpool2-fc128-relu-fc")
        XCTAssertEqual(try ModelSpec("conv3k3p1s2").tokens, [.conv(out: 3, kernel: 3, stride: 2, padding: 1)],
                       "the optional fields in any order")
        XCTAssertEqual(try ModelSpec("fc5-logsoftmax").tokens, [.linear(out: 5), .logSoftmax])
    }

    func testUnknownTokenNamesItAndListsTheAllowedTokens() {
        assertThrows(.model, containing: "unknown model token 'dropout'", try ModelSpec("conv8k3-dropout-fc"))
        assertThrows(.model, containing: "allowed tokens: conv<out>k<kernel>[s<stride>][p<padding>], bn, relu",
                     try ModelSpec("conv8k3-dropout-fc"))
        assertThrows(.model, containing: "presets: seed-cnn, seed-cnn-bn, cifar-cnn, letters-cnn, mlp", try ModelSpec("resnet"))
        assertThrows(.model, containing: "unknown model token ''", try ModelSpec("conv8k3--fc"))
        assertThrows(.model, containing: "the model spec is empty", try ModelSpec(""))
    }

    func testMalformedNumbers() {
        for token in ["conv0k3", "convk3", "conv32k3k3", "conv32", "conv32x3", "fc0", "maxpool", "maxpool2k2",
                      "conv99999k3", "fc12a", "conv32k"] {
            assertThrows(.model, containing: "unknown model token '\(token)'", try ModelSpec("\(token)-fc"))
        }
    }

    func testShapesThatDoNotFit() {
        assertThrows(.model, containing: "kernel 30 does not fit a 28×28 input with padding 0", try network("conv8k30-fc"))
        assertThrows(.model, containing: "a 5×5 pool does not fit a 4×4 input", try network("conv2k3-maxpool5-fc", input: [1, 6, 6]))
        assertThrows(.model, containing: "Conv2d needs an image input", try network("fc20-conv4k3-fc"))
        assertThrows(.model, containing: "BatchNorm2d needs an image input", try network("fc20-bn-fc"))
        // A zero stride is refused before any division by it.
        assertThrows(.model, containing: "kernel size and stride must be at least 1", try network("conv8k3s0-fc"))
        assertThrows(.model, containing: "pool size and stride must be at least 1", try network("conv8k3-maxpool2s0-fc"))
        assertThrows(.model, containing: "kernel 3 does not fit", try network("conv8k3p3-fc"))
    }

    /// Found by scripts/fuzz (the inputs are in Tests/FuzzCorpus): a tensor past 2^28 values is
    /// refused before its size overflows an Int (a trap, or without bounds checks a wrong model)
    /// or is allocated.
    func testTensorsPastTheSizeBoundAreRefused() {
        // 3·4·4·4·3234·4·3233·32333·32332 overflows: fc1 had 0 input features.
        assertThrows(.model, containing: "input shape 3×4×4×4×3234×4×3233×32333×32332 is out of range",
                     try network("fc", input: [3, 4, 4, 4, 3234, 4, 3233, 32333, 32332]))
        assertThrows(.model, containing: "input shape 0×28 is out of range", try network("fc", input: [0, 28]))
        // conv3's weight alone is 3.8 GB of floats.
        assertThrows(.model, containing: "conv3: Conv2d's weight 61616×616×5×5 or output 61616×1×1 has more than 2^28 values",
                     try network("conv16k5-bn-conv616k5s22p2-conv61616k5s2p2"))
        assertThrows(.model, containing: "conv1: Conv2d's weight 1024×1×1×1 or output 1024×1024×1024 has more than 2^28 values",
                     try network("conv1024k1-fc", input: [1, 1024, 1024]))
        assertThrows(.model, containing: "fc1: Linear's weight 2×268435456 is out of range",
                     try network("fc2-fc", input: [1, 16384, 16384]))
        assertThrows(.model, containing: "fc2: Linear's weight 0×16 is out of range", try network("fc16-fc", classes: 0))
    }

    func testLogSoftmaxMustBeLast() {
        assertThrows(.model, containing: "'logsoftmax' must be the last token of 'fc-logsoftmax-relu'",
                     try network("fc-logsoftmax-relu"))
    }

    func testSpecMustEndAtTheClassCount() {
        assertThrows(.model, containing: "ends with shape [8, 26, 26] but the data has 10 classes; end the spec with 'fc'",
                     try network("conv8k3-relu"))
        assertThrows(.model, containing: "ends with shape [128] but the data has 10 classes", try network("fc128"))
        XCTAssertEqual(try network("fc128", classes: 128).parameterCount, 784 * 128 + 128)
    }
}
