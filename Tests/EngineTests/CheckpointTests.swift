import Engine
import Foundation
import TestSupport
import XCTest

/// The checkpoint format (docs/architecture.md §4): a bit-exact round trip, and every kind of
/// damage giving `EngineError.invalidCheckpoint` with a message that says what is wrong — never a
/// crash.
final class CheckpointTests: XCTestCase {
    static let model = "conv4k3-bn-relu-maxpool2-fc"
    let source = "test.ckpt"
    var layout = ParameterLayout()
    var original: Checkpoint!

    /// conv 4·9 + 4 = 40 and bn 4 + 4 and fc 36·3 + 3 = 111: 159 parameters, 8 buffers.
    override func setUpWithError() throws {
        let network = try Network(spec: ModelSpec(Self.model), inputShape: [1, 8, 8], classes: 3)
        layout = network.layout
        var parameters = randomFloats(layout.parameterCount, seed: 1, stream: "parameters")
        // Values whose bits a careless round trip would lose.
        parameters[0] = -0.0
        parameters[1] = Float(bitPattern: 0x7FC0_1234)  // NaN with a payload
        parameters[2] = .leastNonzeroMagnitude
        parameters[3] = -.infinity
        var hyperparameters = Hyperparameters()
        hyperparameters.seed = 42
        hyperparameters.optimizer.weightDecay = 5e-4
        hyperparameters.schedule.shape = .constant
        let manifest = CheckpointManifest(model: network.spec.text, inputShape: [1, 8, 8], classes: 3,
                                          hyperparameters: hyperparameters, step: 1234, epoch: 3,
                                          tensors: Checkpoint.tensorTable(layout: layout, optimizer: hyperparameters.optimizer))
        original = Checkpoint(manifest: manifest, parameters: parameters,
                              buffers: randomFloats(layout.bufferCount, seed: 1, stream: "buffers"),
                              optimizerState: randomFloats(layout.parameterCount, seed: 1, stream: "velocity", scale: 1e-3))
    }

    func decode(_ bytes: [UInt8]) throws -> Checkpoint {
        try Checkpoint.decode(bytes, source: source, layout: layout)
    }

    func assertSameState(_ a: Checkpoint, _ b: Checkpoint, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        assertBitwiseEqual(a.parameters, b.parameters, "\(what): parameters", file: file, line: line)
        assertBitwiseEqual(a.buffers, b.buffers, "\(what): buffers", file: file, line: line)
        assertBitwiseEqual(a.optimizerState, b.optimizerState, "\(what): optimizer state", file: file, line: line)
    }

    func editingTensor(_ bytes: [UInt8], _ index: Int, _ edit: @escaping (inout [String: Any]) -> Void) throws -> [UInt8] {
        try editingManifest(bytes) { json in
            var tensors = json["tensors"] as! [[String: Any]]
            edit(&tensors[index])
            json["tensors"] = tensors
        }
    }

    func testRoundTripIsBitExact() throws {
        var files: [[UInt8]] = []
        for shuffle in [true, false] {
            let bytes = try original.encoded(shuffle: shuffle)
            XCTAssertEqual(Array(bytes[0..<8]), Array("SCNNCKPT".utf8))
            let decoded = try decode(bytes)
            assertSameState(decoded, original, "shuffle \(shuffle)")
            var expected = original.manifest
            expected.payloadFloats = 2 * 159 + 8
            expected.payloadSHA256 = decoded.manifest.payloadSHA256
            expected.byteShuffled = shuffle
            XCTAssertEqual(decoded.manifest, expected)
            XCTAssertEqual(decoded.manifest.payloadSHA256.count, 64)
            XCTAssertEqual(try original.encoded(shuffle: shuffle), bytes, "encoding is deterministic")
            files.append(bytes)
        }
        XCTAssertNotEqual(files[0], files[1], "shuffling changes the stored bytes")
    }

    func testBadMagic() throws {
        var bytes = try original.encoded()
        bytes[0] = UInt8(ascii: "X")
        assertThrows(.checkpoint, containing: "'test.ckpt' is not a usable checkpoint: bad magic", try decode(bytes))
        assertThrows(.checkpoint, containing: "only 10 bytes, shorter than the 20-byte header", try decode(Array(bytes.prefix(10))))
    }

    func testFutureFormatVersion() throws {
        var bytes = try original.encoded()
        bytes[8] = 4
        assertThrows(.checkpoint, containing: "format version 4, this build reads versions 2–3 (written by a newer swift-cnn-train)",
                     try decode(bytes))
        bytes[8] = 1
        assertThrows(.checkpoint, containing: "format version 1, this build reads versions 2–3", try decode(bytes))
    }

    /// AdamW's two moments follow the buffers under PyTorch's state names, and round-trip
    /// bit for bit; a table that lists SGD's momentum for an Adam run is refused.
    func testAdamStateRoundTrip() throws {
        var adam = try XCTUnwrap(original)
        adam.manifest.hyperparameters.optimizer.kind = .adamw
        adam.manifest.tensors = Checkpoint.tensorTable(layout: layout, optimizer: adam.manifest.hyperparameters.optimizer)
        XCTAssertEqual(adam.manifest.tensors.map(\.name).filter { $0.hasSuffix("conv1.weight") },
                       ["conv1.weight", "exp_avg.conv1.weight", "exp_avg_sq.conv1.weight"])
        XCTAssertEqual(adam.manifest.tensors.last?.offset, 2 * 159 + 8 + 159 - 3, "exp_avg_sq.fc1.bias")
        adam.optimizerState = randomFloats(2 * layout.parameterCount, seed: 2, stream: "moments", scale: 1e-3)
        let decoded = try decode(try adam.encoded())
        assertSameState(decoded, adam, "adamw")
        XCTAssertEqual(decoded.manifest.payloadFloats, 3 * 159 + 8)
        var mislabelled = adam
        mislabelled.manifest.tensors = original.manifest.tensors
        assertThrows(.checkpoint, containing: "exp_avg.conv1.weight [4, 1, 3, 3] at 167",
                     try decode(try mislabelled.encoded()))
    }

    /// A checkpoint that swift-cnn-train wrote in format 2 (before Adam; the model
    /// conv4k3-relu-maxpool2-fc after 3 steps on synthetic:64:16) loads as an SGD run with
    /// clipping and label smoothing off; so does `asFormat2` of ours, as ResumeTests uses it.
    func testFormat2CheckpointLoadsAsSGD() throws {
        let path = TestSupport.fixtureDirectory.appendingPathComponent("checkpoint-v2-sgd-step3.scnn").path
        let bytes = try XCTUnwrap(FileManager.default.contents(atPath: path))
        XCTAssertEqual(bytes[8], 2, "the fixture's format version")
        let (checkpoint, network) = try loadCheckpoint(path: path)
        let h = checkpoint.manifest.hyperparameters
        XCTAssertEqual(h.optimizer, Optimizer(momentum: 0.9), "the settings format 2 lacks take their defaults")
        XCTAssertEqual(h.clipGradNorm, 0)
        XCTAssertEqual(h.labelSmoothing, 0)
        XCTAssertEqual(checkpoint.manifest.step, 3)
        XCTAssertEqual(checkpoint.fileVersion, 2)
        XCTAssertEqual(checkpoint.optimizerState.count, network.parameterCount)
        XCTAssertTrue(checkpoint.optimizerState.contains { $0 != 0 }, "the momentum was read")
        let ours = try decode(try asFormat2(try original.encoded()))
        XCTAssertEqual(ours.fileVersion, 2)
        XCTAssertEqual(ours.manifest.hyperparameters, original.manifest.hyperparameters)
        assertSameState(ours, original, "asFormat2")
    }

    /// A manifest whose hyperparameters cannot be right (here a chunk size of 0, which would
    /// divide by zero in evaluation) is refused, although its checksums hold.
    func testImpossibleHyperparametersAreRefused() throws {
        var broken = try XCTUnwrap(original)
        broken.manifest.hyperparameters.chunkSize = 0
        assertThrows(.checkpoint, containing: "its hyperparameters cannot be right (chunkSize must be at least 1 (got 0))",
                     try decode(try broken.encoded()))
    }

    func testManifestLengthBeyondTheFile() throws {
        var bytes = try original.encoded()
        bytes.replaceSubrange(12..<16, with: littleEndian(UInt32(bytes.count)))
        assertThrows(.checkpoint, containing: "manifest length \(bytes.count) runs past the end of the \(bytes.count)-byte file",
                     try decode(bytes))
        bytes.replaceSubrange(12..<16, with: littleEndian(.max))
        assertThrows(.checkpoint, containing: "manifest length 4294967295 runs past the end", try decode(bytes))
    }

    func testManifestThatIsNotJSON() throws {
        var bytes = try original.encoded()
        bytes[20] = UInt8(ascii: "#")
        assertThrows(.checkpoint, containing: "manifest checksum mismatch", try decode(bytes))
        // With a matching checksum, the JSON itself is checked.
        let (_, payloadStart) = try Checkpoint.manifest(of: try original.encoded(), source: source)
        bytes.replaceSubrange(16..<20, with: littleEndian(Checkpoint.crc32(Array(bytes[20..<payloadStart]))))
        assertThrows(.checkpoint, containing: "the manifest is not valid JSON of the expected form", try decode(bytes))
    }

    func testTensorTableMismatch() throws {
        let bytes = try original.encoded()
        XCTAssertEqual(try decode(editingManifest(bytes) { _ in }).parameters.count, 159, "re-encoding alone keeps it valid")
        let shape = try editingTensor(bytes, 1) { $0["shape"] = [5] }
        assertThrows(.checkpoint, containing: "tensor table does not match model '\(Self.model)': conv1.bias [5] at 36, expected conv1.bias [4] at 36",
                     try decode(shape))
        let offset = try editingTensor(bytes, 2) { $0["offset"] = 41 }
        assertThrows(.checkpoint, containing: "bn1.weight [4] at 41, expected bn1.weight [4] at 40", try decode(offset))
        let missing = try editingManifest(bytes) { json in json["tensors"] = (json["tensors"] as! [[String: Any]]).dropLast().map { $0 } }
        assertThrows(.checkpoint, containing: "(13 tensors, expected 14)", try decode(missing))
        // The right file for another model.
        let other = try Network(spec: ModelSpec("conv5k3-bn-relu-maxpool2-fc"), inputShape: [1, 8, 8], classes: 3).layout
        assertThrows(.checkpoint, containing: "conv1.weight [4, 1, 3, 3] at 0, expected conv1.weight [5, 1, 3, 3] at 0",
                     try Checkpoint.decode(bytes, source: source, layout: other))
        let floats = try editingManifest(bytes) { $0["payloadFloats"] = 327 }
        assertThrows(.checkpoint, containing: "the manifest claims 327 floats, the model has 326", try decode(floats))
    }

    func testPayloadChecksumMismatch() throws {
        let bytes = try original.encoded()
        let altered = try editingManifest(bytes) { json in
            let sha = json["payloadSHA256"] as! String
            json["payloadSHA256"] = (sha.first == "0" ? "1" : "0") + sha.dropFirst()
        }
        assertThrows(.checkpoint, containing: "payload checksum mismatch (the file is corrupt)", try decode(altered))
    }

    func testTruncatedZstdFrame() throws {
        let bytes = try original.encoded()
        for cut in [1, 4, 10, 100] {
            assertThrows(.checkpoint, containing: "the zstd frame is truncated or corrupt", try decode(Array(bytes.dropLast(cut))))
        }
    }

    func testTrailingBytes() throws {
        let bytes = try original.encoded()
        assertThrows(.checkpoint, containing: "3 bytes follow the zstd frame", try decode(bytes + [0, 1, 2]))
        assertThrows(.checkpoint, containing: "bytes follow the zstd frame", try decode(bytes + (try original.encoded())))
    }

    /// Single-bit flips at 300 positions spread over header, manifest and payload: each must
    /// give invalidCheckpoint, or decode to exactly the original state *and manifest* (a flip
    /// that changed, say, the step and still loaded would silently resume somewhere else).
    func testSingleBitFlips() throws {
        let bytes = try original.encoded()
        let reference = try decode(bytes)
        let (_, payloadStart) = try Checkpoint.manifest(of: bytes, source: source)
        var accepted: [String] = []
        var rejected = 0
        for i in 0..<300 {
            let position = i * bytes.count / 300, bit = i % 8
            var flipped = bytes
            flipped[position] ^= 1 << bit
            do {
                let decoded = try decode(flipped)
                assertSameState(decoded, reference, "bit \(bit) of byte \(position)")
                if decoded.manifest != reference.manifest {
                    let region = position < 20 ? "header" : position < payloadStart ? "manifest" : "payload"
                    let context = String(decoding: flipped[max(position - 20, 0)..<min(position + 4, bytes.count)], as: UTF8.self)
                    accepted.append("byte \(position) (\(region)) → …\(context)…")
                }
            } catch let error as EngineError {
                XCTAssertEqual(error.kind, .checkpoint, "bit \(bit) of byte \(position): \(error)")
                rejected += 1
            }
        }
        XCTAssertGreaterThan(rejected, 250)
        XCTAssertTrue(accepted.isEmpty, "\(accepted.count) single-bit flips loaded with a different manifest: \(accepted.joined(separator: ", "))")
    }

    /// SHA-256 over every parameter then every buffer as little-endian Float32 bytes.
    func testParameterDigest() {
        // sha256 of no bytes, and of the bytes 00 00 80 3f 00 00 20 c0 (1.0, −2.5).
        XCTAssertEqual(parameterDigest(parameters: [], buffers: []),
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(parameterDigest(parameters: [1, -2.5], buffers: []),
                       "48943f7a0ea247f8e3c9386d0c5822fe181d323a9289980426638cc4e72a43e1")
        XCTAssertEqual(parameterDigest(parameters: [1], buffers: [-2.5]), parameterDigest(parameters: [1, -2.5], buffers: []))
        XCTAssertNotEqual(parameterDigest(parameters: [0], buffers: []), parameterDigest(parameters: [-0.0], buffers: []),
                          "the digest sees bits, not values")
    }
}
