import Foundation
import TestSupport
import XCTest

/// `export CKPT --format safetensors`: the file's structure, and its data bit for bit.
final class ExportTests: XCTestCase {
    /// seed-cnn-bn's tensors in PyTorch's `state_dict` order, with their shapes.
    static let stateDict: [(String, [Int])] = [
        ("conv1.weight", [32, 1, 3, 3]), ("conv1.bias", [32]),
        ("bn1.weight", [32]), ("bn1.bias", [32]), ("bn1.running_mean", [32]), ("bn1.running_var", [32]), ("bn1.num_batches_tracked", []),
        ("conv2.weight", [64, 32, 3, 3]), ("conv2.bias", [64]),
        ("bn2.weight", [64]), ("bn2.bias", [64]), ("bn2.running_mean", [64]), ("bn2.running_var", [64]), ("bn2.num_batches_tracked", []),
        ("fc1.weight", [128, 1600]), ("fc1.bias", [128]),
        ("fc2.weight", [10, 128]), ("fc2.bias", [10]),
    ]

    func testExportsSafetensorsNamedAsPyTorchStateDict() throws {
        let trained = try TrainedModel.files()
        let path = trained.directory + "/model.safetensors"
        let result = try runTrainer(["export", trained.checkpoint, "--format", "safetensors", "-o", path])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("wrote \(path): 18 tensors"), result.stdout)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))

        // Header: UInt64 LE length, then JSON; the data starts 8-byte aligned.
        let headerLength = Int(bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        XCTAssertEqual((8 + headerLength) % 8, 0)
        let headerBytes = Data(bytes[8..<(8 + headerLength)])
        let header = try XCTUnwrap(try JSONSerialization.jsonObject(with: headerBytes) as? [String: Any])
        let dataStart = 8 + headerLength, dataLength = bytes.count - dataStart

        let metadata = try XCTUnwrap(header["__metadata__"] as? [String: String])
        XCTAssertEqual(metadata["model"], "conv32k3-bn-relu-maxpool2-conv64k3-bn-relu-maxpool2-fc128-relu-fc")
        XCTAssertEqual(metadata["preset"], "seed-cnn-bn")
        XCTAssertEqual(metadata["input_shape"], "1x28x28")
        XCTAssertEqual(metadata["classes"], "10")
        XCTAssertEqual(metadata["preprocessing"], "x/255")
        XCTAssertEqual(metadata["output"], "logits")
        XCTAssertEqual(metadata["batch_norm_eps"], "1e-05")
        XCTAssertEqual(metadata["step"], "36")

        // Names and shapes as PyTorch's state_dict, listed in its order; no momentum.
        XCTAssertEqual(Set(header.keys).subtracting(["__metadata__"]), Set(Self.stateDict.map(\.0)))
        let headerText = String(decoding: headerBytes, as: UTF8.self)
        let positions = Self.stateDict.map { headerText.range(of: "\"\($0.0)\"")!.lowerBound }
        XCTAssertEqual(positions, positions.sorted(), "tensors listed in state_dict order")

        // Offsets cover the data with no gap or overlap; each tensor's size fits its shape.
        var ranges: [(Int, Int)] = []
        let state = try checkpointState(path: trained.checkpoint)
        for (name, shape) in Self.stateDict {
            let entry = try XCTUnwrap(header[name] as? [String: Any], name)
            XCTAssertEqual(entry["shape"] as? [Int], shape, name)
            let offsets = try XCTUnwrap(entry["data_offsets"] as? [Int], name)
            XCTAssertEqual(offsets.count, 2)
            ranges.append((offsets[0], offsets[1]))
            let raw = Array(bytes[(dataStart + offsets[0])..<(dataStart + offsets[1])])
            if name.hasSuffix("num_batches_tracked") {
                XCTAssertEqual(entry["dtype"] as? String, "I64")
                XCTAssertEqual(offsets[0] % 8, 0, "\(name) is 8-byte aligned")
                XCTAssertEqual(raw, withUnsafeBytes(of: Int64(36).littleEndian) { Array($0) }, "the checkpoint's step")
                continue
            }
            XCTAssertEqual(entry["dtype"] as? String, "F32", name)
            XCTAssertEqual(offsets[0] % 4, 0, "\(name) is 4-byte aligned")
            let expected = try XCTUnwrap(state.tensors[name], name)
            XCTAssertEqual(expected.shape, shape, name)
            XCTAssertEqual(offsets[1] - offsets[0], 4 * shape.reduce(1, *), name)
            let bits = stride(from: 0, to: raw.count, by: 4).map { i in raw[i..<(i + 4)].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
            XCTAssertEqual(bits, expected.values.map(\.bitPattern), "\(name) bit for bit")
        }
        ranges.sort { $0.0 < $1.0 }
        XCTAssertEqual(ranges.first?.0, 0)
        XCTAssertEqual(ranges.last?.1, dataLength)
        for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(a.1, b.0, "contiguous") }
        // Batch norm's running statistics are the trained ones, not the initial 0 and 1.
        XCTAssertNotEqual(state.tensors["bn1.running_mean"]?.values, [Float](repeating: 0, count: 32))
    }

    func testDefaultOutputAndErrors() throws {
        let trained = try TrainedModel.files()
        let dir = TestSupport.temporaryDirectory("export")
        let copy = dir + "/model.scnn"
        try FileManager.default.copyItem(atPath: trained.checkpoint, toPath: copy)
        let result = try runTrainer(["export", copy])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/model.safetensors"))

        try Data("SCNNCKPT garbage".utf8).write(to: URL(fileURLWithPath: dir + "/bad.scnn"))
        try assertFails(["export", copy, "--format", "onnx"], status: 64, message: "The value 'onnx' is invalid for '--format <format>'")
        try assertFails(["export", dir + "/missing.scnn"], status: 1, message: "cannot read checkpoint '\(dir)/missing.scnn'")
        try assertFails(["export", dir + "/bad.scnn"], status: 1, message: "is not a usable checkpoint")
        try assertFails(["export", copy, "-o", "/nonexistent/m.safetensors"], status: 1, message: "cannot write '/nonexistent/m.safetensors'")
    }
}
