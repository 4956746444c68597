import Engine
import Foundation

/// A parser of untrusted input, run on arbitrary bytes. Each must return or throw: a crash (a
/// bounds or overflow trap, an AddressSanitizer report), a hang or a huge allocation is a bug.
enum FuzzTarget: String, CaseIterable {
    /// A checkpoint (`loadCheckpoint`, as evaluate, predict, export, inspect and --resume read it).
    case checkpoint
    /// An IDX file, read as the images and as the labels of a data set.
    case idx
    /// The same, gzip-compressed first, so that mutations reach the IDX header behind a valid
    /// gzip stream (`idx` sees corrupt gzip streams).
    case idxGzip = "idx-gz"
    /// A CIFAR-10 binary batch.
    case cifar
    /// A PGM or PPM image (predict --image).
    case image
    /// A metrics file (plot).
    case metrics
    /// A model spec (--model), built into a network for a 1×28×28 and a 3×32×32 input.
    case spec
    /// An --input shape (inspect), with a network built on it.
    case shape

    func run(_ bytes: [UInt8]) {
        switch self {
        case .checkpoint:
            _ = try? loadCheckpoint(bytes: bytes, source: "fuzz input")
            // A mutation almost never keeps the manifest's CRC-32 right; with it repaired the
            // fuzzer reaches the manifest's JSON and the model it names.
            if let repaired = FuzzTarget.repairingManifestChecksum(bytes) {
                _ = try? loadCheckpoint(bytes: repaired, source: "fuzz input")
            }
        case .idx:
            ScratchFiles.write(bytes)
            ScratchFiles.loadIDX()
        case .idxGzip:
            ScratchFiles.writeGzip(bytes)
            ScratchFiles.loadIDX()
        case .cifar:
            ScratchFiles.write(bytes)
            _ = try? CIFAR10.load(files: [ScratchFiles.candidate], name: "fuzz", classes: 10)
        case .image:
            _ = try? NetpbmImage(bytes: bytes, source: "fuzz input")
        case .metrics:
            _ = try? TrainingCurves(jsonLines: Data(bytes), path: "fuzz input")
        case .spec:
            guard let spec = try? ModelSpec(String(decoding: bytes, as: UTF8.self)) else { return }
            for inputShape in [[1, 28, 28], [3, 32, 32]] {
                _ = try? Network(spec: spec, inputShape: inputShape, classes: 10)
            }
        case .shape:
            guard let inputShape = InputShape.parse(String(decoding: bytes, as: UTF8.self)) else { return }
            for model in ["mlp", "seed-cnn"] {
                _ = try? Network(spec: try! ModelSpec(model), inputShape: inputShape, classes: 10)
            }
        }
    }

    /// The bytes with the header's manifest CRC-32 set to the manifest's, when the header's
    /// manifest length fits in them (the header layout is in Checkpoint.swift).
    static func repairingManifestChecksum(_ bytes: [UInt8]) -> [UInt8]? {
        guard bytes.count >= 20 else { return nil }
        let manifestLength = bytes[12..<16].reversed().reduce(0) { $0 << 8 | Int($1) }
        guard 20 + manifestLength <= bytes.count else { return nil }
        var repaired = bytes
        let crc = Checkpoint.crc32(Array(bytes[20..<(20 + manifestLength)]))
        for k in 0..<4 { repaired[16 + k] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(k))) }
        return repaired
    }
}
