import Engine
import Foundation
import TestSupport
import XCTest

/// The bits must not depend on the CPU the kernels were built for (docs/architecture.md §2.3): an
/// AVX2-only build (`SWIFT_CNN_TRAIN_CPU=haswell`, which `scripts/test` makes) and the native
/// AVX-512 build train to the same digest.
final class BuildTargetTests: XCTestCase {
    func testHaswellAndNativeBuildsGiveTheSameDigest() throws {
        guard let haswell = ProcessInfo.processInfo.environment["SWIFT_CNN_TRAIN_HASWELL_BINARY"] else {
            throw XCTSkip("SWIFT_CNN_TRAIN_HASWELL_BINARY is not set (scripts/test builds it)")
        }
        // The AVX2 build must really be one: no AVX-512 registers in the engine's code.
        let disassembly = try runCommand("/usr/bin/objdump", ["-d", "--no-show-raw-insn", haswell], timeout: 120)
        var function = "", avx512InEngine = Set<String>()
        for line in disassembly.stdout.split(separator: "\n") {
            if line.hasSuffix(">:") { function = String(line) } else if line.contains("zmm") && function.contains("6Engine") {
                avx512InEngine.insert(function)
            }
        }
        XCTAssertTrue(avx512InEngine.isEmpty, "AVX-512 in the haswell build: \(avx512InEngine.prefix(3))")
        // Every preset, and specs for the kernels the presets do not reach: 5×5 and 1×1
        // kernels, stride 2, odd channel counts, average pooling, tanh.
        let specs = ["conv20k5s2p2-tanh-conv50k3-relu-conv12k1-avgpool2-fc", "conv8k7p3-bn-relu-maxpool3s2-fc32-gelu-fc"]
        for model in ModelSpec.presets.map(\.name) + specs {
            let arguments = ["train", "--model", model, "--data", "synthetic:480:48", "--batch-size", "48", "--max-steps", "8"]
            let native = try runTrainer(arguments, timeout: 300)
            let avx2 = try runCommand(haswell, arguments, timeout: 300)
            XCTAssertEqual(native.status, 0, native.stderr)
            XCTAssertEqual(avx2.status, 0, avx2.stderr)
            XCTAssertNotNil(native.digest)
            XCTAssertEqual(avx2.digest, native.digest, model)
        }
    }
}
